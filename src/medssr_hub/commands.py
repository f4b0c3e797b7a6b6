"""The stage subcommands: where each one's config dataclass lives, what runs it and what it prints.

Each stage is imported when its subcommand runs, so `medssr-hub pull` or `publish` does not wait for trl
and transformers to import (16 s before, 1.5 s after, for `medssr-hub --help` on 2 cores).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from medssr_hub.evaluation.evaluate import EvalConfig
    from medssr_hub.evaluation.leaderboard import LeaderboardConfig
    from medssr_hub.labeling.label import LabelConfig
    from medssr_hub.runs.ablation import AblationConfig
    from medssr_hub.runs.settings import RunSettings
    from medssr_hub.synthesis.config import SynthesisConfig


def _synthesize(cfg: SynthesisConfig) -> int:
    from medssr_hub.synthesis.synthesize import run_synthesis

    done = run_synthesis(cfg)
    print(
        f"{done.num_questions} questions in {cfg.output_dir}/dataset: rare {done.rare_ratio:.1%} "
        f"(alpha {cfg.alpha}); acceptance {done.acceptance}; rejections {done.rejections}"
    )
    if done.published:
        print(f"Published as {done.published}")
    return 0


def _label(cfg: LabelConfig) -> int:
    from medssr_hub.labeling.label import run_labeling

    done = run_labeling(cfg)
    accuracy = done.label_accuracy
    print(
        f"{done.questions} questions labeled by majority of {cfg.n}: kept {done.kept} in band {cfg.band}, "
        f"discarded {done.discarded}; mean agreement {done.mean_agreement:.2f}"
        + (
            f"; label accuracy {accuracy:.1%} on {done.reference_questions} questions with keys"
            if accuracy is not None
            else ""
        )
    )
    print(f"Results in {cfg.output_dir}/dataset (data/, stats.json, plots/labeling.png)")
    if done.published:
        print(f"Published as {done.published}")
    return 0


def _evaluate(cfg: EvalConfig) -> int:
    from medssr_hub.evaluation.evaluate import run_evaluation

    done = run_evaluation(cfg)
    print((Path(cfg.output_dir) / "results.md").read_text())
    for why in done.unavailable.values():
        print(f"not run: {why}", file=sys.stderr)
    print(f"Results in {cfg.output_dir}/ (results.json, results.md, details/*.parquet)")
    return 0


def _leaderboard(cfg: LeaderboardConfig) -> int:
    from medssr_hub.evaluation.leaderboard import run_leaderboard

    _, files, published = run_leaderboard(cfg)
    print(files["md"].read_text())
    print("Wrote " + ", ".join(str(f) for f in files.values()))
    if published is not None:
        print(f"Published {published.described}")
    return 0


def print_wall_time(start: float) -> None:
    minutes, seconds = divmod(round(time.monotonic() - start), 60)
    print(f"Wall time: {minutes}m{seconds:02d}s (this run; finished steps on disk were not redone)")


def _demo(cfg: RunSettings) -> int:
    from medssr_hub.runs.demo import render_summary, run_demo

    start = time.monotonic()
    summary = run_demo(cfg)
    print(render_summary(summary))
    print(f"Results in {cfg.output_dir}/ (summary.md, leaderboard/, eval/<model>/details/, stage*/final/)")
    if summary.published:
        print(f"Published the leaderboard as {summary.published}")
    print_wall_time(start)
    return 0


def _ablation(cfg: AblationConfig) -> int:
    from medssr_hub.runs.ablation import run_ablation

    start = time.monotonic()
    summary = run_ablation(cfg)
    print((Path(cfg.run.output_dir) / "ablation.md").read_text())
    print(f"Results in {cfg.run.output_dir}/ (ablation.md, .csv, .json, .png; leaderboard/; <row>/final/)")
    if summary.published:
        print(f"Published the rows' leaderboard as {summary.published}")
    print_wall_time(start)
    return 0


# Stage subcommands: where the config dataclass lives (imported when the subcommand runs), what runs it.
STAGES: dict[str, tuple[str, Callable[..., int], str]] = {
    "synthesize": (
        "medssr_hub.synthesis.config:SynthesisConfig",
        _synthesize,
        "knowledge-enhanced question synthesis (rho < alpha injection)",
    ),
    "label": (
        "medssr_hub.labeling.label:LabelConfig",
        _label,
        "pseudo-labels by majority vote of the policy's answers",
    ),
    "evaluate": (
        "medssr_hub.evaluation.config:EvalConfig",
        _evaluate,
        "score a model on the benchmarks with the paper's protocol",
    ),
    "leaderboard": (
        "medssr_hub.evaluation.leaderboard:LeaderboardConfig",
        _leaderboard,
        "join evaluation runs into md/csv/json tables and a chart",
    ),
    "demo": ("medssr_hub.runs.settings:RunSettings", _demo, "run the main job on the embedded default model"),
    "ablation": (
        "medssr_hub.runs.ablation:AblationConfig",
        _ablation,
        "train and evaluate the ablation rows side by side, one table",
    ),
}
# Training subcommands: the module whose parse_args and main run them (TRL's three dataclasses).
TRAINING = {
    "stage1": ("medssr_hub.training.grpo", "stage 1: self-supervised GRPO on pseudo-labels"),
    "stage2": ("medssr_hub.training.grpo", "stage 2: supervised GRPO on gold answers"),
    "sft": ("medssr_hub.training.sft", "SFT distillation baseline"),
}


def stage_config(command: str) -> type:
    """The config of a stage subcommand (imported now): a dataclass, or a run composed of several
    (`config.config_parts`)."""
    module, _, name = STAGES[command][0].partition(":")
    return getattr(import_module(module), name)
