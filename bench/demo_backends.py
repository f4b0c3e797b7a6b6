"""The main job (`make demo`) on the embedded backend against the same job on vLLM, side by side in one run.

Runs `medssr-hub demo --config recipes/demo.yaml` twice, each in a fresh output folder and a fresh local hub,
first with `backend: embedded` (transformers in the process), then with `backend: vllm` (vLLM's offline
engine in the process) for the generating steps: synthesis, labeling and evaluation. Training is the same
in both (the stage recipes' transformers rollouts). Prints each run's wall time, each step's share (read
from when each step's output was written) and the ratios (embedded / vLLM, > 1 means vLLM is faster).

    .venv/bin/python bench/demo_backends.py [--backends embedded vllm] [--keep DIR] [-- extra demo flags]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLI = Path(sys.executable).with_name("medssr-hub")

# Each step's end: the newest file of its outputs, in the order the demo runs the steps.
STEPS = (
    ("synthesis", "synthesis/dataset/stats.json"),
    ("labeling", "labeling/**/stats.json"),
    ("stage 1", "stage1/final/train_summary.json"),
    ("held-out set", "heldout/dataset/stats.json"),
    ("stage 2", "stage2/final/train_summary.json"),
    ("evaluation (3 models)", "summary.json"),
)


def step_times(out: Path, start: float) -> dict[str, float]:
    times, previous = {}, start
    for name, pattern in STEPS:
        ends = [p.stat().st_mtime for p in out.glob(pattern)]
        if ends:
            times[name] = max(ends) - previous
            previous = max(ends)
    return times


def run_demo(backend: str, work: Path, extra: list[str]) -> dict:
    out, hub = work / backend / "out", work / backend / "hub"
    env = {**os.environ, "MEDSSR_HUB_ROOT": str(hub)}
    cmd = [str(CLI), "demo", "--config", "recipes/demo.yaml", "--backend", backend, "--output_dir", str(out)]
    log = work / f"{backend}.log"
    print(f"[{backend}] {' '.join(cmd[1:])} (log: {log})", flush=True)
    start = time.time()
    with log.open("w") as f:
        rc = subprocess.run([*cmd, *extra], cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT).returncode
    wall = time.time() - start
    if rc != 0:
        sys.exit(f"[{backend}] demo failed (exit {rc}); see {log}")
    summary = json.loads((out / "summary.json").read_text())
    return {"wall_s": wall, "steps": step_times(out, start), "summary": summary}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backends", nargs="+", default=["embedded", "vllm"])
    parser.add_argument("--keep", help="write the runs here (default: a temporary folder, removed)")
    args, extra = parser.parse_known_args()
    extra = [a for a in extra if a != "--"]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.keep or tmp)
        work.mkdir(parents=True, exist_ok=True)
        runs = {b: run_demo(b, work, extra) for b in args.backends}
    names = [name for name, _ in STEPS]
    print("\n| step | " + " | ".join(args.backends) + (" | ratio |" if len(runs) == 2 else " |"))
    print("|---|" + "---:|" * (len(runs) + (len(runs) == 2)))
    for name in [*names, "wall"]:
        values = [r["wall_s"] if name == "wall" else r["steps"].get(name) for r in runs.values()]
        cells = [f"{v:.1f} s" if v is not None else "-" for v in values]
        ratio = f" | {values[0] / values[1]:.2f}x" if len(values) == 2 and all(values) else ""
        print(f"| {name} | " + " | ".join(cells) + ratio + (" |" if len(values) == 2 else " |"))
    for backend, r in runs.items():
        check = r["summary"].get("method check") or {}
        print(f"\n[{backend}] stages: {json.dumps(r['summary']['stages'], default=str)[:600]}")
        print(f"[{backend}] method check: {json.dumps(check, default=str)[:600]}")


if __name__ == "__main__":
    main()
