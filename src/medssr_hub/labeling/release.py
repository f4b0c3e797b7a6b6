"""Labeling's release: the kept and discarded questions with their labels, the diagnostics, `stats.json`, and
the card and publish."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from medssr_hub import tracking
from medssr_hub.errors import ConfigError
from medssr_hub.generation import stage_model_id
from medssr_hub.hub import StageRelease
from medssr_hub.hub.cards import dataset_card
from medssr_hub.labeling.diagnostics import (
    BAND_LABELS,
    VotedQuestion,
    compute_diagnostics,
    plot_diagnostics,
    render_diagnostics,
)
from medssr_hub.published import publishable, published_config
from medssr_hub.records import MCQRecord
from medssr_hub.schema import LABELED_FEATURES
from medssr_hub.summary import StageSummary
from medssr_hub.utils import atomic_write_json, atomic_write_parquet
from medssr_hub.voting import majority_vote

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LabelingSummary(StageSummary):
    """A labeling run: questions voted on, kept in band and discarded, the mean agreement, and the labels'
    accuracy where questions have reference answers (None elsewhere)."""

    @property
    def questions(self) -> int:
        return self.stats["questions"]

    @property
    def kept(self) -> int:
        return self.stats["kept"]

    @property
    def discarded(self) -> int:
        return self.stats["discarded"]

    @property
    def mean_agreement(self) -> float:
        return self.stats["mean_agreement"]

    @property
    def label_accuracy(self) -> float | None:
        return self.stats.get("label_accuracy")

    @property
    def reference_questions(self) -> int:
        return self.stats.get("reference_questions", 0)


def write_release(labeler, records: list[MCQRecord], votes: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Kept and discarded questions with their labels, the diagnostics plot, `stats.json`; then the publish
    when the config names a repo. `labeler` is the run's `Labeler`. Returns the stats."""
    cfg = labeler.cfg
    low, high = cfg.band
    kept, discarded, diag_rows = [], [], []
    for record in records:
        v = votes[record.id]
        vote = majority_vote(v["letters"])
        row = {
            **record.to_row(),
            "label": vote.label,
            "agreement": vote.agreement,
            "votes": v["letters"],
            "recovered": v["recovered"],
            "tie": vote.tie,
        }
        in_band = vote.label is not None and low <= vote.agreement <= high
        (kept if in_band else discarded).append(row)
        diag_rows.append(VotedQuestion(record, v["letters"], v["recovered"], vote, in_band))
    diagnostics = compute_diagnostics(diag_rows, cfg)
    for name, rows in (("train", kept), ("discarded", discarded)):
        path = labeler.release / "data" / f"{name}-00000.parquet"
        if rows:
            atomic_write_parquet(path, rows, LABELED_FEATURES)
        else:
            path.unlink(missing_ok=True)
    plot = labeler.release / "plots" / "labeling.png"
    plot_diagnostics(diagnostics, plot, cfg)
    stats = {
        "kept": len(kept),
        "discarded": len(discarded),
        "input": publishable(labeler.input_report.source),
        **diagnostics,
    }
    atomic_write_json(labeler.release / "stats.json", stats)
    accuracy = diagnostics.get("label_accuracy")  # against the construction keys, where questions have them
    logger.info(
        "Labeled %d questions: kept %d in band [%.3f, %.3f]; label accuracy %s",
        len(records),
        len(kept),
        low,
        high,
        "n/a (no keys)" if accuracy is None else f"{accuracy:.1%}",
    )
    if cfg.publish_repo:
        stats["published"] = publish(labeler, stats)
    run = f"label-{cfg.publish_repo.split('/')[-1] if cfg.publish_repo else labeler.out.name}"
    tracking.log_summary(cfg.trackio_project, run, stats, {"n": cfg.n, "band": cfg.band, "model": cfg.model})
    return stats


def publish(labeler, stats: dict[str, Any]) -> str:
    """The labeled dataset's card, then its publish: returns `repo@version (location)`. A run that kept no
    question publishes nothing: its stats and plot stay in the output folder for a look."""
    cfg = labeler.cfg
    if not stats["kept"]:
        raise ConfigError(
            f"labeling kept none of {stats['kept'] + stats['discarded']} questions in band {cfg.band}: nothing to "
            f"publish as {cfg.publish_repo} (stats in {labeler.release / 'stats.json'}); widen `band` or label "
            "more questions"
        )
    card = dataset_card(
        repo_id=cfg.publish_repo,
        version=cfg.publish_version,
        pretty_name="MedSSR pseudo-labeled synthetic questions",
        summary=(
            f"Synthetic questions with pseudo-labels: the majority of {cfg.n} answers of the policy "
            f"({stage_model_id(cfg.backend, cfg.model, cfg.endpoint, labeler.served_model())}). Split `train` keeps "
            f"questions whose agreement lies in [{cfg.band[0]}, {cfg.band[1]}]; `discarded` holds the rest."
        ),
        stage="labeling",
        num_rows=stats["kept"] + stats["discarded"],
        data_files={"train": "data/train-*.parquet", "discarded": "data/discarded-*.parquet"}
        if stats["discarded"]
        else {"train": "data/train-*.parquet"},
        provenance={
            "input": f"{publishable(cfg.input)}@{cfg.input_revision or 'latest'}",
            "policy model": stage_model_id(cfg.backend, cfg.model, cfg.endpoint, labeler.served_model()),
            "samples per question (n)": cfg.n,
            "sampling": f"T={cfg.temperature}, top_p={cfg.top_p}, top_k={cfg.top_k}, max {cfg.max_tokens} tokens",
            "seed": cfg.seed,
            "agreement band": f"[{cfg.band[0]}, {cfg.band[1]}]",
        },
        counts={
            "kept": stats["kept"],
            "discarded": stats["discarded"],
            **{BAND_LABELS[k]: v for k, v in stats["band_counts"].items()},
        },
        evaluation=render_diagnostics(stats),
        plots={"Agreement and label accuracy": "plots/labeling.png"},
        config=published_config(cfg),
        tags=["synthetic", "pseudo-labels"],
    )
    result = StageRelease.of(cfg).publish(labeler.release, card)
    return result.described
