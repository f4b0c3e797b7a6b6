"""Experiment tracking with trackio, the Hub's tracker: training through TRL's `report_to: trackio`,
labeling's and evaluation's summary metrics through `trackio_project`, all into one project.

trackio logs to a local SQLite project ($TRACKIO_DIR, else ~/.cache/huggingface/trackio), offline; it
syncs to a Space only when one is named (`trackio_space_id` in the training args), never by default.
`trackio show --project NAME` opens the dashboard locally.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def reports_to_trackio(training_args) -> bool:
    report_to = training_args.report_to or []
    return "trackio" in ([report_to] if isinstance(report_to, str) else report_to)


def training_run_name(script_args, training_args) -> str:
    """A training run's name in the project: the published model's name and version, else the output
    folder's name (never a machine-local path). The same run resumed logs into the same trackio run."""
    if training_args.run_name:
        return training_args.run_name
    if script_args.publish_repo:
        return f"{script_args.publish_repo.split('/')[-1]}-{script_args.publish_version}"
    return f"{script_args.stage}-{Path(training_args.output_dir).name}"


def card_fields(training_args) -> dict[str, str]:
    """The model card's link to the run: the Space when one is named, else the local project and run."""
    if not reports_to_trackio(training_args):
        return {}
    project, run = training_args.project, training_args.run_name
    space = getattr(training_args, "trackio_space_id", None)
    if space:
        return {
            "training metrics": f"[trackio](https://huggingface.co/spaces/{space}) project `{project}`, run `{run}`"
        }
    return {
        "training metrics": f"trackio project `{project}`, run `{run}` (local: `trackio show --project {project}`)"
    }


def log_summary(
    project: str | None, run: str, metrics: dict[str, Any], config: dict[str, Any] | None = None
) -> None:
    """One stage's summary metrics (numbers only) as one step of the run `run` in `project`; nothing when
    project is None."""
    if not project:
        return
    import trackio

    numbers = {k: float(v) for k, v in metrics.items() if isinstance(v, int | float) and math.isfinite(v)}
    trackio.init(project=project, name=run, config=config or {}, resume="allow", embed=False)
    try:
        trackio.log(numbers)
    finally:
        trackio.finish()
    logger.info("Logged %d summary metrics to trackio project %s, run %s", len(numbers), project, run)
