"""Questions pseudo-labeled per second: the labeling stage (embedded backend, n votes in batches with a
shared prefill) vs. a naive loop of one generate() per vote, same questions, same run.

    .venv/bin/python bench/label_throughput.py [--questions 8] [--n 8] [--max-tokens 64]
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from embedded_votes import naive_loop  # noqa: E402  (the same naive baseline as bench/embedded_votes.py)

from medssr_hub.answers import answer_prompt  # noqa: E402
from medssr_hub.generation import SamplingParams  # noqa: E402
from medssr_hub.labeling.label import LabelConfig, Labeler  # noqa: E402
from medssr_hub.records import load_records  # noqa: E402
from medssr_hub.voting import majority_vote  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--questions", type=int, default=8)
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument(
        "--benchmarks-dir", default=os.environ.get("MEDSSR_BENCHMARKS_DIR", "../shared/benchmarks")
    )
    args = parser.parse_args()
    records = load_records(Path(args.benchmarks_dir) / "medqa.json")[0][: args.questions]
    with tempfile.TemporaryDirectory() as out:
        labeler = Labeler(
            LabelConfig(chat=True, n=args.n, max_tokens=args.max_tokens, output_dir=out, batch_size=64)
        )
        backend = labeler.backend
        backend.generate(
            [answer_prompt(records[0])], SamplingParams(n=2, max_tokens=4), progress=False
        )  # warm-up
        start = time.perf_counter()
        labeled = labeler.vote(records)
        stage_s = time.perf_counter() - start

    params = SamplingParams(n=args.n, max_tokens=args.max_tokens, seed=42)
    start = time.perf_counter()
    # Generation only, one call per vote: the naive side is not even charged for extraction and the
    # recovery pass, which the labeling stage's time includes.
    naive_loop(backend, [answer_prompt(r) for r in records], params)
    naive_s = time.perf_counter() - start

    labels = [majority_vote(row["letters"]).label for row in labeled]
    stage_qps, naive_qps = len(records) / stage_s, len(records) / naive_s
    print(
        f"labeling stage : {len(records)} questions x {args.n} votes in {stage_s:.1f}s = {stage_qps:.3f} questions/s"
    )
    print(
        f"naive loop     : {len(records)} questions x {args.n} votes in {naive_s:.1f}s = {naive_qps:.3f} questions/s"
    )
    print(
        f"ratio          : {stage_qps / naive_qps:.1f}x  (threads {torch.get_num_threads()}; labels {labels})"
    )


if __name__ == "__main__":
    main()
