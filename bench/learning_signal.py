"""Does stage 1 move anything? Held-out reward and parse rate before vs after N stage 1 GRPO steps.

Synthetic vignettes (keys known by construction) are split: a training half is pseudo-labeled by the
embedded policy and used for stage 1 (reward = pseudo-label); a held-out half is answered before and
after training, k samples each, and scored against the keys. Both models are scored in the same run
with the same seeds; 95% confidence intervals are a bootstrap over held-out questions (paired for the
difference).

    .venv/bin/python bench/learning_signal.py [--train 32] [--heldout 48] [--steps 16] [--samples 4] \
        [--extraction official|lenient]

The reward reads answers by `--extraction` (default official, as training does); the held-out scores are
reported under both rules.
"""

import argparse
import json
import random
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from medssr_hub.answers import Extraction, answer_prompt
from medssr_hub.generation import SamplingParams, build_backend
from medssr_hub.labeling.label import LabelConfig, run_labeling
from medssr_hub.records import load_records
from medssr_hub.synthesis.config import SynthesisConfig
from medssr_hub.synthesis.synthesize import run_synthesis
from medssr_hub.training import launch_command

ROOT = Path(__file__).resolve().parents[1]


RULES = ("official", "lenient")
METRICS = [f"{what} ({rule})" for rule in RULES for what in ("reward", "parse rate")]


def score(model: str, records, samples: int, max_tokens: int) -> list[tuple[float, ...]]:
    """Per question, for each rule (official, lenient): (mean reward against the key, parse rate) over
    `samples` seeded samples, read as the accuracy reward reads them (first pass, no recovery)."""
    backend = build_backend("embedded", model=model, batch_size=64)
    params = SamplingParams(n=samples, temperature=0.6, top_p=0.95, top_k=20, max_tokens=max_tokens, seed=7)
    completions = backend.generate([answer_prompt(r) for r in records], params, progress=True)
    out = []
    for record, completion in zip(records, completions, strict=True):
        row: list[float] = []
        for rule in RULES:
            letters = [Extraction(rule).first_pass(s.text, record.letters) for s in completion.samples]
            row += [
                statistics.fmean(letter == record.answer for letter in letters),
                statistics.fmean(letter is not None for letter in letters),
            ]
        out.append(tuple(row))
    return out


def bootstrap(values: list[float], reps: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    rng = random.Random(seed)
    means = sorted(statistics.fmean(rng.choices(values, k=len(values))) for _ in range(reps))
    return statistics.fmean(values), means[int(0.025 * reps)], means[int(0.975 * reps) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--train", type=int, default=32)
    parser.add_argument("--heldout", type=int, default=48)
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--learning-rate", default="1e-5")
    parser.add_argument("--extraction", default="official", choices=RULES, help="the reward's rule")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        hub = str(tmp / "hub")
        run_synthesis(
            SynthesisConfig(
                num_questions=args.train + args.heldout,
                alpha=1.0,
                rare_generator="vignette",
                output_dir=str(tmp / "synth"),
                seed=1234,
            )
        )
        records, _ = load_records(tmp / "synth" / "dataset")
        random.Random(0).shuffle(records)
        train, heldout = records[: args.train], records[args.train : args.train + args.heldout]
        (tmp / "train.jsonl").write_text("\n".join(json.dumps(r.to_row()) for r in train))
        run_labeling(
            LabelConfig(
                input=str(tmp / "train.jsonl"),
                n=4,
                max_tokens=args.max_tokens,
                band=[0.0, 1.0],
                chat=True,
                output_dir=str(tmp / "labels"),
                publish_repo="bench/labeled",
                hub=hub,
            )
        )
        start = time.perf_counter()
        subprocess.run(
            launch_command(
                "stage1.py", "smollm2/stage1.yaml",
                "--dataset_name", "bench/labeled", "--dataset_revision", "v0.1.0", "--hub", hub,
                "--max_steps", str(args.steps), "--learning_rate", args.learning_rate, "--save_strategy", "no",
                "--max_completion_length", str(args.max_tokens), "--output_dir", str(tmp / "stage1"),
                "--publish_repo", "bench/stage1", "--report_to", "none", "--extraction", args.extraction,
            ),
            check=True,
            cwd=ROOT,
        )  # fmt: skip
        train_s = time.perf_counter() - start
        before = score("embedded", heldout, args.samples, args.max_tokens)
        after = score(str(tmp / "stage1" / "final"), heldout, args.samples, args.max_tokens)

    print(
        f"\nstage 1: {args.steps} steps on {args.train} pseudo-labeled vignettes in {train_s:.0f}s; "
        f"(reward read by the {args.extraction} rule); held-out: {len(heldout)} vignettes x {args.samples} "
        "samples, scored against construction keys by both rules"
    )
    print(f"{'metric':<22}{'before':>22}{'after':>22}{'after - before':>26}")
    for i, name in enumerate(METRICS):
        b, a = [x[i] for x in before], [x[i] for x in after]
        diff = bootstrap([y - x for x, y in zip(b, a, strict=True)])
        cells = [f"{m:.3f} [{lo:.3f}, {hi:.3f}]" for m, lo, hi in (bootstrap(b), bootstrap(a), diff)]
        print(f"{name:<22}{cells[0]:>22}{cells[1]:>22}{cells[2]:>26}")
    # Accuracy among parsed answers: separates "learned the format" from "learned the answers".
    for name, scored in (("before", before), ("after", after)):
        for k, rule in enumerate(RULES):
            parsed = sum(x[2 * k + 1] for x in scored)
            right = sum(x[2 * k] for x in scored)
            print(f"{name} ({rule}): accuracy among parsed answers {right / parsed if parsed else 0:.3f}")
    print("chance for 5 options: 0.200; intervals: 95% bootstrap over held-out questions (paired difference)")


if __name__ == "__main__":
    main()
