"""Evaluation runs as the leaderboard reads them: an evaluation output folder (`results.json` and
`details/`), a results.json, or every model of a published leaderboard (`ORG/NAME@version`)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from medssr_hub.errors import InputError
from medssr_hub.resolve import is_repo_id, resolve_dataset
from medssr_hub.schema import RESULTS_FEATURES


@dataclass
class Run:
    """One model's evaluation as the leaderboard sees it."""

    result: dict[str, Any]  # `model`, `benchmarks` (name -> mean, std, items, ...), as results.json holds
    details: pd.DataFrame | None  # one row per item and sample (DETAILS_FEATURES), when there are any
    origin: str  # where it came from: `run <folder name>` or `ORG/NAME@version`

    @property
    def model(self) -> str:
        return self.result["model"]

    @property
    def benchmarks(self) -> dict[str, dict[str, Any]]:
        return self.result["benchmarks"]

    @classmethod
    def from_folder(cls, path: str | Path, result: dict[str, Any] | None = None) -> Run:
        """An evaluation output folder (or its results.json); `result` when the caller already holds it."""
        path = Path(path)
        file = path / "results.json" if path.is_dir() else path
        # A result held in memory is taken as its results.json holds it (keys sorted): a run published
        # straight after its evaluation and the same run read back later publish the same bytes.
        result = _read_result(file) if result is None else json.loads(json.dumps(result, sort_keys=True))
        parts = [pd.read_parquet(f) for f in sorted((file.parent / "details").glob("*.parquet"))]
        details = pd.concat(parts, ignore_index=True) if parts else None
        return cls(result, details, f"run {file.parent.name}")


def _read_result(file: Path) -> dict[str, Any]:
    if not file.exists():
        raise FileNotFoundError(
            f"{file.parent if file.name == 'results.json' else file}: no results.json (run "
            "`medssr-hub evaluate ... --output_dir DIR` first), and not a published leaderboard ORG/NAME@version"
        )
    try:
        result = json.loads(file.read_text())
    except json.JSONDecodeError as e:
        raise InputError(f"{file}: not valid JSON ({e})") from e
    if not isinstance(result, dict) or "benchmarks" not in result or "model" not in result:
        raise InputError(f"{file}: not an evaluation result (needs 'model' and 'benchmarks')")
    return result


# The columns every published leaderboard has had; later ones (both rules, the recovery pass) are optional.
CORE_RESULTS = frozenset(
    {"model", "benchmark", "title", "rare", "source", "extraction", "items", "samples", "mean", "std"}
    | {"parse_rate", "recovery_rate"}
)


def _benchmark_from_row(row: dict[str, Any]) -> dict[str, Any]:
    """A published `results` row back into a run's benchmark entry: plain Python values, and the
    `recovery_*` columns as the nested `recovery` record results.json holds."""
    entry = {}
    for k in RESULTS_FEATURES:
        if k in ("model", "benchmark") or k not in row:
            continue
        value = row[k]
        value = value.tolist() if hasattr(value, "tolist") else value
        entry[k] = None if isinstance(value, float) and math.isnan(value) else value  # a missing cell
    rec = {k: entry.pop(f"recovery_{k}", None) for k in ("rule", "family", "ids", "tokens")}
    if rec["rule"] is not None:
        entry["recovery"] = {
            "rule": rec["rule"],
            "family": rec["family"],
            "ids": rec["ids"],
            "max_tokens": rec["tokens"],
        }
    return entry


def load_runs(source: str | Path, hub: str | None = None) -> list[Run]:
    """The runs in an evaluation output folder or results.json (one), or in a published leaderboard
    `ORG/NAME@version` (one per model in its `results` config), read from `hub` or as `resolve_dataset` does."""
    name = str(source)
    repo, _, version = name.partition("@")
    if Path(name).expanduser().exists() or not is_repo_id(repo):
        return [Run.from_folder(Path(name).expanduser())]
    folder = resolve_dataset(repo, version or None, hub)
    tables = {}
    for config in ("results", "details"):
        files = sorted((folder / "data").glob(f"{config}-*.parquet"))
        tables[config] = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True) if files else None
    results = tables["results"]
    if results is None or not set(results.columns) >= CORE_RESULTS:
        raise InputError(
            f"{name}: not a published leaderboard (no `results` config with {sorted(CORE_RESULTS)})"
        )
    origin = f"{repo}@{version or 'main'}"
    runs = []
    for model, rows in results.groupby("model", sort=False):
        benchmarks = {row["benchmark"]: _benchmark_from_row(row) for row in rows.to_dict("records")}
        for bench, entry in benchmarks.items():  # a score is a number in [0, 1]: a table is data, not trusted
            mean = entry.get("mean")
            if not isinstance(mean, int | float) or isinstance(mean, bool) or not 0 <= mean <= 1:
                raise InputError(
                    f"{name}: results row {model!r} / {bench!r} has mean {mean!r}, not a score in [0, 1]"
                )
        details = tables["details"]
        if details is not None:
            details = details[details["model"] == model].drop(columns="model").reset_index(drop=True)
        runs.append(Run({"model": model, "benchmarks": benchmarks}, details, origin))
    return runs
