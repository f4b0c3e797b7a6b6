"""vLLM against the transformers embedded backend, side by side in one run, same model and prompts:

1. labeling votes: the labeling stage's `vote` (n votes per question, extraction, recovery pass);
2. evaluation with the recovery pass: `Evaluator.run` on MedQA items, n samples each;
3. a stage 1 GRPO step: TRL's vLLM rollouts (`use_vllm: true, vllm_mode: colocate`) against TRL's
   transformers rollouts, each through `accelerate launch`, the mean `step_time` TRL logs.

Engine start-up is reported apart from the work (a run pays it once). Prints ratios (vLLM / embedded
throughput, > 1 means vLLM is faster).

    .venv/bin/python bench/vllm_backends.py [--questions 16] [--n 4] [--max-tokens 96] [--skip-training]
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
sys.path.insert(0, str(ROOT))

from medssr_hub.evaluation.evaluate import EvalConfig, Evaluator  # noqa: E402
from medssr_hub.generation import build_backend  # noqa: E402
from medssr_hub.generation.offline_vllm import engine_args  # noqa: E402
from medssr_hub.labeling.label import LabelConfig, Labeler, run_labeling  # noqa: E402
from medssr_hub.records import load_records  # noqa: E402
from medssr_hub.training import launch_command  # noqa: E402


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def generation_benches(args, out: Path) -> dict[str, dict[str, float]]:
    records = load_records(Path(args.benchmarks_dir) / "medqa.json")[0][: args.questions]
    rows: dict[str, dict[str, float]] = {}
    for kind in ("embedded", "vllm"):
        backend, start_s = timed(lambda kind=kind: build_backend(kind, batch_size=64))
        labeler = Labeler(
            LabelConfig(chat=True, n=args.n, max_tokens=args.max_tokens, output_dir=str(out / f"l-{kind}"))
        )
        labeler._backend = backend
        labeler.vote(records[:1])  # warm-up
        _, label_s = timed(lambda labeler=labeler: labeler.vote(records))
        cfg = EvalConfig(
            chat=True, benchmarks=[str(Path(args.benchmarks_dir) / "medqa.json")], max_items=args.questions,
            num_samples=args.n, max_tokens=args.max_tokens, backend=kind, output_dir=str(out / f"e-{kind}"),
        )  # fmt: skip
        result, eval_s = timed(lambda cfg=cfg, backend=backend: Evaluator(cfg, backend=backend).run())
        medqa = next(iter(result["benchmarks"].values()))
        rows[kind] = {
            "start_s": start_s,
            "label_s": label_s,
            "eval_s": eval_s,
            "official_mean": medqa["official_mean"],
            "recovered": medqa.get("recovery_rate", float("nan")),
        }
        del backend, labeler
    return rows


def training_bench(args, out: Path) -> dict[str, float]:
    from tests.conftest import publish_vignettes

    hub = publish_vignettes(out / "root")
    run_labeling(
        LabelConfig(
            input="medssr/synth", input_revision="v1.0.0", chat=True, hub=str(hub), n=4, max_tokens=40,
            band=[0.0, 1.0], output_dir=str(out / "labels"), publish_repo="medssr/synth-labeled",
            publish_version="v1.0.0",
        )
    )  # fmt: skip
    times = {}
    for name, extra in (("transformers", ["--use_vllm", "false"]), ("vllm", ["--use_vllm", "true"])):
        folder = out / f"train-{name}"
        command = launch_command(
            "stage1.py", "smollm2/stage1.yaml",
            "--dataset_name", "medssr/synth-labeled", "--dataset_revision", "v1.0.0", "--hub", str(hub),
            "--max_steps", str(args.steps), "--save_steps", str(args.steps), "--output_dir", str(folder),
            "--per_device_train_batch_size", "8", "--num_generations", "4",
            "--max_completion_length", str(args.max_tokens), "--vllm_mode", "colocate",
            "--vllm_max_model_length", "1024", "--publish_repo", f"medssr/bench-{name}", *extra,
        )  # fmt: skip
        _, wall = timed(
            lambda command=command: subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
        )
        state = json.loads((folder / f"checkpoint-{args.steps}" / "trainer_state.json").read_text())
        steps = [h["step_time"] for h in state["log_history"] if "step_time" in h]
        times[name] = sum(steps) / len(steps)
        times[f"{name}_wall"] = wall
    return times


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--questions", type=int, default=16)
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--skip-training", action="store_true")
    parser.add_argument(
        "--benchmarks-dir",
        default=os.environ.get("MEDSSR_BENCHMARKS_DIR", str(ROOT.parent / "shared" / "benchmarks")),
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        rows = generation_benches(args, out)
        training = None if args.skip_training else training_bench(args, out)
    e, v = rows["embedded"], rows["vllm"]
    print(
        f"{args.questions} MedQA questions x {args.n} samples x {args.max_tokens} tokens, chat template, SmolLM2-135M"
    )
    print(f"engine start      : embedded {e['start_s']:6.1f}s   vllm {v['start_s']:6.1f}s")
    print(
        f"labeling votes    : embedded {e['label_s']:6.1f}s   vllm {v['label_s']:6.1f}s   ratio {e['label_s'] / v['label_s']:.2f}x"
    )
    print(
        f"evaluation+recov. : embedded {e['eval_s']:6.1f}s   vllm {v['eval_s']:6.1f}s   ratio {e['eval_s'] / v['eval_s']:.2f}x"
    )
    print(
        f"official accuracy : embedded {e['official_mean']:.1f}   vllm {v['official_mean']:.1f} "
        f"(float32 vs {engine_args({}, on_gpu=False)['dtype']} decode)"
    )
    if training:
        t, w = training["transformers"], training["vllm"]
        print(
            f"stage 1 step      : transformers {t:6.1f}s   vllm colocate {w:6.1f}s   ratio {t / w:.2f}x "
            f"(whole launches: {training['transformers_wall']:.0f}s vs {training['vllm_wall']:.0f}s)"
        )


if __name__ == "__main__":
    main()
