"""A training process's start, with and without vLLM imported: `use_vllm: false` keeps it out.

.venv/bin/python bench/training_startup.py [--repeats 3]

Each repeat starts two fresh interpreters side by side in time (alternating which goes first), both
parsing the shipped stage 1 recipe with `use_vllm: false` and importing the GRPO trainer: one as the
`medssr-hub stage1` command does (`keep_vllm_out` first), one as it did before (TRL imports vLLM). It
prints each pair and the ratio of the medians, after one uncounted warm-up start. Only the import: the
model and data load are the same either way.
"""

import argparse
import statistics
import subprocess
import sys
import time

CODE = """
import sys
from medssr_hub.training.grpo import parse_args
from medssr_hub.training.vllm_sync import keep_vllm_out
_, args, _ = parse_args(["--config", "recipes/smollm2/stage1.yaml", "--use_vllm", "false"])
if {keep}:
    keep_vllm_out(args)
from medssr_hub.training.stops import MedSSRGRPOTrainer
assert ("vllm" in sys.modules and sys.modules["vllm"] is not None) is not {keep}
"""


def start(keep: bool) -> float:
    began = time.perf_counter()
    subprocess.run([sys.executable, "-c", CODE.format(keep=keep)], check=True)
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    start(False)  # warm-up, not counted: the first start reads every library from disk
    kept, imported = [], []
    for i in range(args.repeats):
        for keep in (i % 2 == 0, i % 2 != 0):
            (kept if keep else imported).append(start(keep))
        print(f"repeat {i + 1}: vLLM kept out {kept[-1]:.1f} s, vLLM imported {imported[-1]:.1f} s")
    a, b = statistics.median(kept), statistics.median(imported)
    print(f"median start: {a:.1f} s without vLLM vs {b:.1f} s with it: {b / a:.2f}x ({b - a:.1f} s per rank)")


if __name__ == "__main__":
    main()
