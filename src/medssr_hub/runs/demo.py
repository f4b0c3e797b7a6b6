"""The main job (`make demo`): the whole MedSSR pipeline on the embedded default, end to end.

1. knowledge-enhanced synthesis (published), 2. pseudo-labels by majority vote (published, read back by
version), 3. stage 1 GRPO on them (the model published), 4. stage 2 GRPO on gold-keyed questions, from the
stage 1 model named by repo id and version (offline: held-out keyed vignettes, published first),
5. evaluation of the base, stage 1 and stage 2 models on the benchmarks with the paper's protocol,
6. a leaderboard of the three (published with per-item details).
Every step resumes from what is on disk: an interrupted run picks up where it stopped.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medssr_hub.evaluation.leaderboard import push_leaderboard, write_leaderboard
from medssr_hub.evaluation.tables import render_markdown
from medssr_hub.field_help import documented
from medssr_hub.published import publishable
from medssr_hub.resume import config_dict, guard_resume
from medssr_hub.runs.method_check import (
    keyed_vignettes_file,
    method_check,
    plot_method_check,
    render_method_check,
)
from medssr_hub.runs.settings import RunSettings
from medssr_hub.runs.steps import (
    base_backend,
    benchmark_files,
    evaluate_model,
    heldout_data,
    labeled_data,
    leaderboard_release,
    train_stage,
)
from medssr_hub.utils import atomic_write_json, atomic_write_text

logger = logging.getLogger(__name__)


@documented
@dataclass
class DemoConfig(RunSettings):
    """`medssr-hub demo --config recipes/demo.yaml [--field value ...]`: the whole pipeline, small."""


def synthesize_and_label(cfg: DemoConfig) -> dict[str, Any]:
    """Steps 1-4: synthesize (published), pseudo-label what was synthesized (published), stage 1, and stage
    2 from it on held-out keyed vignettes."""
    results = labeled_data(cfg)
    if "labeled" in results and cfg.stage1 and cfg.stage1.get("max_steps", 1):
        results["stage1"] = train_stage(
            cfg, "stage1", cfg.stage1, model=(cfg.model, None), data=results.pop("labeled")
        )
        stage1_model = (results["stage1"]["publish_repo"], results["stage1"]["publish_version"])
        if cfg.heldout and cfg.stage2 and cfg.stage2.get("max_steps", 1) and stage1_model[0]:
            results["heldout"], data = heldout_data(cfg)
            results["stage2"] = train_stage(cfg, "stage2", cfg.stage2, model=stage1_model, data=data)
    results.pop("labeled", None)
    return results


def run_demo(cfg: DemoConfig) -> dict[str, Any]:
    benchmark_files(cfg)  # a missing input is reported first, before the resume and publish checks
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    guard_resume(out, cfg.run_fingerprint(), "demo")
    release = leaderboard_release(cfg)

    stages = synthesize_and_label(cfg)
    models = [("base", cfg.model, f"base ({cfg.model})")]
    for stage, label in (("stage1", "stage 1"), ("stage2", "stage 2")):
        if stage in stages:
            steps = stages[stage]["steps"]
            models.append((stage, str(out / stage / "final"), f"{label} ({steps} GRPO steps)"))
    backend, keyed = base_backend(cfg), keyed_vignettes_file(cfg)
    runs, keyed_runs = [], {}
    try:
        for folder, model, name in models:
            done = evaluate_model(cfg, folder, model, name, keyed, backend if model == cfg.model else None)
            runs.append(done.run)
            if done.keyed is not None:
                keyed_runs[folder] = (name, done.keyed, done.keyed_out)
    finally:
        backend.close()
    files = write_leaderboard(runs, out / "leaderboard")
    check = method_check(keyed_runs)
    if check:
        files["method_check"] = plot_method_check(check, out / "method_check.png")
    summary = {
        "config": config_dict(cfg),
        "stages": {name: _headline(stats) for name, stats in stages.items()},
        "method check": check,
        "evaluation": {r.model: r.benchmarks for r in runs},
        "benchmarks from": sorted({publishable(b["source"]) for r in runs for b in r.benchmarks.values()}),
        "leaderboard": render_markdown(runs),
        "files": {k: str(v) for k, v in files.items()},
    }
    if cfg.publish_repo:
        result = push_leaderboard(runs, files, release)
        summary["published"] = f"{result.repo_id}@{result.version} ({result.location})"
    atomic_write_json(out / "summary.json", summary)
    atomic_write_text(out / "summary.md", render_summary(summary))
    return summary


def _headline(stats: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "num_questions",
        "rare_ratio",
        "acceptance",
        "questions",
        "kept",
        "discarded",
        "mean_agreement",
        "label_accuracy",
        "label_accuracy_in_band",
        "steps",
        "reward, first / last logged",
        "parse_rate, mean",
        "key_accuracy, mean",
        "published",
    )
    return {k: stats[k] for k in keys if k in stats}


def render_summary(summary: dict[str, Any]) -> str:
    cfg = summary["config"]
    lines = [
        f"# medssr-hub demo: {cfg['model']} ({cfg['num_samples']} samples/question, max {cfg['max_tokens']} tokens)",
        "",
        *(
            f"- {name}: " + ", ".join(f"{k} {_fmt(v)}" for k, v in h.items())
            for name, h in summary["stages"].items()
        ),
        "",
        *render_method_check(summary.get("method check") or {}),
        *(["![The method check](method_check.png)", ""] if summary.get("method check") else []),
        summary["leaderboard"],
        "Benchmark items from: " + "; ".join(summary.get("benchmarks from", [])),
    ]
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_fmt(v)}" for k, v in value.items()) + "}"
    return str(value)
