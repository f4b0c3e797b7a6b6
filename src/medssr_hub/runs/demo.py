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
from medssr_hub.evaluation.runs import Run
from medssr_hub.evaluation.tables import render_markdown
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
from medssr_hub.summary import StageSummary
from medssr_hub.utils import atomic_write_json, atomic_write_text

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoSummary:
    """What a demo run did: each step's summary (synthesis, labeling, stage1, heldout, stage2, those that
    ran), the method check, every model's evaluation, the leaderboard, and where it was published."""

    config: RunSettings
    stages: dict[str, StageSummary]
    method_check: dict[str, Any]
    runs: list[Run]
    files: dict[str, Path]
    published: str | None = None

    @property
    def benchmarks_from(self) -> list[str]:
        return sorted({publishable(b["source"]) for r in self.runs for b in r.benchmarks.values()})

    def record(self) -> dict[str, Any]:
        """As `summary.json` holds it."""
        record = {
            "config": config_dict(self.config),
            "stages": {name: s.headline() for name, s in self.stages.items()},
            "method check": self.method_check,
            "evaluation": {r.model: r.benchmarks for r in self.runs},
            "benchmarks from": self.benchmarks_from,
            "leaderboard": render_markdown(self.runs),
            "files": {k: str(v) for k, v in self.files.items()},
        }
        return record | ({"published": self.published} if self.published else {})


def synthesize_and_label(cfg: RunSettings) -> dict[str, StageSummary]:
    """Steps 1-4: synthesize (published), pseudo-label what was synthesized (published), stage 1, and stage
    2 from it on held-out keyed vignettes. Each step's summary, by step, in that order."""
    data = labeled_data(cfg)
    stages = {name: s for name, s in (("synthesis", data.synthesis), ("labeling", data.labeling)) if s}
    if data.labeled and cfg.stage1 and cfg.stage1.get("max_steps", 1):
        stage1 = stages["stage1"] = train_stage(
            cfg, "stage1", cfg.stage1, model=(cfg.model, None), data=data.labeled
        )
        if cfg.heldout and cfg.stage2 and cfg.stage2.get("max_steps", 1) and stage1.repo_id:
            stages["heldout"], heldout = heldout_data(cfg)
            stages["stage2"] = train_stage(cfg, "stage2", cfg.stage2, model=stage1.model, data=heldout)
    return stages


def run_demo(cfg: RunSettings) -> DemoSummary:
    benchmark_files(cfg)  # a missing input is reported first, before the resume and publish checks
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    guard_resume(out, cfg.run_fingerprint(), "demo")
    release = leaderboard_release(cfg)

    stages = synthesize_and_label(cfg)
    models = [("base", cfg.model, f"base ({cfg.model})")]
    for stage, label in (("stage1", "stage 1"), ("stage2", "stage 2")):
        if stage in stages:
            steps = stages[stage].steps
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
    published = push_leaderboard(runs, files, release).described if cfg.publish_repo else None
    summary = DemoSummary(cfg, stages, check, runs, files, published)
    atomic_write_json(out / "summary.json", summary.record())
    atomic_write_text(out / "summary.md", render_summary(summary))
    return summary


def render_summary(summary: DemoSummary) -> str:
    cfg = summary.config
    lines = [
        f"# medssr-hub demo: {cfg.model} ({cfg.num_samples} samples/question, max {cfg.max_tokens} tokens)",
        "",
        *(
            f"- {name}: " + ", ".join(f"{k} {_fmt(v)}" for k, v in stage.headline().items())
            for name, stage in summary.stages.items()
        ),
        "",
        *render_method_check(summary.method_check or {}),
        *(["![The method check](method_check.png)", ""] if summary.method_check else []),
        render_markdown(summary.runs),
        "Benchmark items from: " + "; ".join(summary.benchmarks_from),
    ]
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_fmt(v)}" for k, v in value.items()) + "}"
    return str(value)
