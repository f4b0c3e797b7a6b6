"""What a stage did, as the runs and the CLI read it: by attribute, never by string keys.

Each stage's entry point (`run_synthesis`, `run_labeling`, `run_evaluation`, a training run's
`TrainingSummary.read`) returns a summary: where it published, its headline numbers, and `stats`, all it
wrote beside its output (its `stats.json`, `train_summary.json` or `results.json`), for the record.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar


@dataclass(frozen=True)
class StageSummary:
    stats: Mapping[str, Any]

    # The numbers a run's summary shows for a stage, those it has, in this order; then where it published.
    HEADLINE: ClassVar[tuple[str, ...]] = (
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
    )

    @property
    def published(self) -> str | None:
        """`repo@version (location)` where the stage published; None when it did not."""
        return self.stats.get("published")

    def headline(self) -> dict[str, Any]:
        shown = {k: self.stats[k] for k in self.HEADLINE if k in self.stats}
        return shown | ({"published": self.published} if self.published else {})
