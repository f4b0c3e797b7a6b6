"""Items scored per second on CPU with the embedded model: batched vs one-by-one, same items, same run.

All sides run the whole evaluation path (generation with n samples, extraction, recovery pass, details)
through `Evaluator`; only `batch_size` differs: 64 sequences per forward pass, one item's n samples, or
one sequence.

    .venv/bin/python bench/eval_throughput.py [--items 12] [--samples 4] [--max-tokens 64] [--benchmark medqa]
"""

import argparse
import os
import tempfile
import time

from medssr_hub.evaluation.evaluate import EvalConfig, Evaluator
from medssr_hub.generation import build_backend


def run(backend, args, batch_size: int) -> float:
    backend.batch_size = batch_size
    with tempfile.TemporaryDirectory() as out:
        cfg = EvalConfig(
            chat=True,
            benchmarks=args.benchmark,
            max_items=args.items,
            num_samples=args.samples,
            max_tokens=args.max_tokens,
            batch_size=batch_size,
            output_dir=out,
        )
        start = time.perf_counter()
        Evaluator(cfg, backend=backend).run()
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=12)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--benchmark", default="medqa")
    args = parser.parse_args()
    os.environ.setdefault("MEDSSR_BENCHMARKS_DIR", "../shared/benchmarks")
    backend = build_backend("embedded", batch_size=64)
    run(backend, argparse.Namespace(**{**vars(args), "items": 1}), 64)  # warm-up
    batched = run(backend, args, 64)
    # One by one: the batch holds one item's samples at a time (they still share the item's prefill).
    single = run(backend, args, args.samples)
    # One sequence at a time: what a plain loop over items and samples does.
    sequential = run(backend, args, 1)
    print(f"{args.items} {args.benchmark} items x {args.samples} samples, max {args.max_tokens} tokens")
    print(f"batched (64 sequences)      : {batched:.1f}s = {args.items / batched:.3f} items/s")
    print(f"one item at a time          : {single:.1f}s = {args.items / single:.3f} items/s")
    print(f"one sequence at a time      : {sequential:.1f}s = {args.items / sequential:.3f} items/s")
    print(f"ratio batched / one item at a time: {single / batched:.2f}x")
    print(f"ratio batched / one sequence at a time: {sequential / batched:.2f}x")


if __name__ == "__main__":
    main()
