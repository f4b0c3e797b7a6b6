"""Votes through the embedded backend vs. a naive loop of one generate() per sample, in one run.

n samples for Q MedQA questions (default 8 x 16), the paper's sampling settings. Prints tokens/s for
both, their ratio, and each one's fraction of this machine's floor: the decode rate that memory bandwidth
(weights read once per step, measured here) or the matmul rate (measured here) allows, whichever is
tighter. Target: ratio >= 5.

    .venv/bin/python bench/embedded_votes.py [--questions 16] [--n 8] [--max-tokens 64] [--batch-size 64]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from medssr_hub.answers import answer_prompt
from medssr_hub.generation import SamplingParams
from medssr_hub.generation.embedded import EmbeddedBackend
from medssr_hub.records import load_records


def measure_bandwidth(gib: float = 1.0, repeats: int = 5) -> float:
    """Read bandwidth in bytes/s: the best of a few full reductions over a buffer larger than any cache."""
    x = torch.ones(int(gib * 2**30 / 4), dtype=torch.float32)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        x.sum()
        best = min(best, time.perf_counter() - t)
    return x.numel() * 4 / best


def measure_matmul(size: int = 1024, repeats: int = 10) -> float:
    """fp32 matmul rate in FLOP/s at decode-like shapes (batch x 576 @ 576 x 1536 is small; use 1024^3)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    t = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - t)


def naive_loop(backend: EmbeddedBackend, prompts, params: SamplingParams) -> tuple[int, float]:
    """What a first script does: one model.generate() call per sample."""
    model, tokenizer = backend.model, backend.tokenizer
    tokens, start = 0, time.perf_counter()
    for i, prompt in enumerate(prompts):
        ids = torch.tensor([backend.encode(prompt)])
        for j in range(params.n):
            torch.manual_seed(params.seed + 1000 * i + j)
            out = model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                do_sample=True,
                temperature=params.temperature,
                top_p=params.top_p,
                top_k=params.top_k,
                max_new_tokens=params.max_tokens,
                pad_token_id=tokenizer.pad_token_id,
            )
            new = out[0, ids.shape[1] :].tolist()
            tokens += next((k for k, t in enumerate(new) if t in backend.eos_ids), len(new))
    return tokens, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--questions", type=int, default=16)
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument(
        "--benchmarks-dir", default=os.environ.get("MEDSSR_BENCHMARKS_DIR", "../shared/benchmarks")
    )
    parser.add_argument("--json", help="also write the numbers to this file")
    args = parser.parse_args()

    records, _ = load_records(Path(args.benchmarks_dir) / "medqa.json")
    prompts = [answer_prompt(r) for r in records[: args.questions]]
    params = SamplingParams(n=args.n, max_tokens=args.max_tokens, seed=42)
    backend = EmbeddedBackend(batch_size=args.batch_size)
    n_params = sum(p.numel() for p in backend.model.parameters())
    weight_bytes = sum(p.numel() * p.element_size() for p in backend.model.parameters())

    backend.generate(prompts[:1], SamplingParams(n=2, max_tokens=4), progress=False)  # warm-up
    start = time.perf_counter()
    completions = backend.generate(prompts, params, progress=False)
    batched_s = time.perf_counter() - start
    batched_tokens = sum(s.completion_tokens for c in completions for s in c.samples)

    naive_tokens, naive_s = naive_loop(backend, prompts, params)

    bandwidth = measure_bandwidth()
    matmul = measure_matmul()
    batch_rows = min(args.batch_size, args.n * args.questions)

    def floor(rows: int) -> float:
        return min(rows * bandwidth / weight_bytes, matmul / (2 * n_params))

    batched_tps, naive_tps = batched_tokens / batched_s, naive_tokens / naive_s
    result = {
        "questions": args.questions,
        "n": args.n,
        "max_tokens": args.max_tokens,
        "batch_size": args.batch_size,
        "threads": torch.get_num_threads(),
        "batched_tokens": batched_tokens,
        "batched_seconds": round(batched_s, 2),
        "batched_tokens_per_s": round(batched_tps, 1),
        "naive_tokens": naive_tokens,
        "naive_seconds": round(naive_s, 2),
        "naive_tokens_per_s": round(naive_tps, 1),
        "ratio": round(batched_tps / naive_tps, 2),
        "read_bandwidth_gb_s": round(bandwidth / 1e9, 2),
        "matmul_gflop_s": round(matmul / 1e9, 1),
        "weights_mb": round(weight_bytes / 1e6, 1),
        "floor_batched_tokens_per_s": round(floor(batch_rows), 1),
        "floor_naive_tokens_per_s": round(floor(1), 1),
        "batched_fraction_of_floor": round(batched_tps / floor(batch_rows), 3),
        "naive_fraction_of_floor": round(naive_tps / floor(1), 3),
    }
    print(f"embedded backend : {batched_tokens} tokens in {batched_s:.1f}s = {batched_tps:.1f} tok/s")
    print(f"naive generate() : {naive_tokens} tokens in {naive_s:.1f}s = {naive_tps:.1f} tok/s")
    print(f"ratio            : {result['ratio']}x (target >= 5)")
    print(
        f"floor            : {result['floor_batched_tokens_per_s']} tok/s at {batch_rows} rows, "
        f"{result['floor_naive_tokens_per_s']} tok/s at 1 row "
        f"(read {result['read_bandwidth_gb_s']} GB/s over {result['weights_mb']} MB of weights, "
        f"matmul {result['matmul_gflop_s']} GFLOP/s)"
    )
    print(
        f"fraction of floor: backend {result['batched_fraction_of_floor']:.1%}, "
        f"naive {result['naive_fraction_of_floor']:.1%}"
    )
    print(json.dumps(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
