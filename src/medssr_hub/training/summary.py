"""What a training run did, read back from its final folder (`train_summary.json`, written by
`hubsync.finish` on the main process), with the model repo and version it published as."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medssr_hub.summary import StageSummary

SUMMARY_FILE = "train_summary.json"


@dataclass(frozen=True)
class TrainingSummary(StageSummary):
    """A training run: its steps, the reward curve's summary, and the model it published (repo id and
    version; None when it did not publish)."""

    repo_id: str | None = None
    version: str | None = None

    @property
    def steps(self) -> int:
        return self.stats["steps"]

    @property
    def model(self) -> tuple[str | None, str | None]:
        """The trained model as a later stage names it: (repo id, version)."""
        return self.repo_id, self.version

    @classmethod
    def read(cls, final: Path, repo_id: str | None, version: str | None) -> TrainingSummary:
        trained = json.loads((final / SUMMARY_FILE).read_text())
        return cls({"steps": trained["global_step"], **trained["summary"]}, repo_id, version)

    def record(self) -> dict[str, Any]:
        """As a run's JSON record keeps it."""
        return {
            "publish_repo": self.repo_id,
            "publish_version": self.version,
            **self.stats,
        }
