"""Leaderboards: runs of several models/checkpoints joined into markdown, CSV, JSON and a PNG chart.

A run is an evaluation output folder (its `results.json` and `details/`) or a published leaderboard
(`ORG/NAME@version`, from the local hub or the Hub): reproductions published by different people join
into one table, each row saying where it came from. `publish_repo` publishes the table and the per-item
details of every run as a versioned Hub dataset (configs `results` and `details`) with a card.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from medssr_hub.answers import EXTRACTIONS
from medssr_hub.config import ConfigError, publishable
from medssr_hub.errors import InputError
from medssr_hub.evaluation.registry import BENCHMARKS, title
from medssr_hub.evaluation.space import push_space
from medssr_hub.field_help import arg, documented
from medssr_hub.hub import publish
from medssr_hub.hub.cards import dataset_card, md_cell
from medssr_hub.resolve import is_repo_id, resolve_dataset
from medssr_hub.schema import LEADERBOARD_DETAILS_FEATURES, RESULTS_FEATURES
from medssr_hub.utils import atomic_write_json, atomic_write_parquet, atomic_write_text

logger = logging.getLogger(__name__)


@documented
@dataclass
class LeaderboardConfig:
    """`medssr-hub leaderboard --results RUN_DIR [RUN_DIR ...] --output_dir DIR [--publish_repo ORG/NAME]`."""

    results: list[str] = arg(
        "the runs to rank: evaluation output folders, results.json files, or published leaderboards as "
        "ORG/NAME@version (merged)",
        default_factory=list,
    )
    output_dir: str = arg(
        "the folder the leaderboard's md, csv, json and png are written to", "outputs/leaderboard"
    )
    publish_repo: str | None = arg(
        "publish the leaderboard (its results and per-item details configs) as this dataset repo (ORG/NAME) "
        "on `hub`; null: do not publish",
        None,
    )
    publish_version: str = "v0.1.0"
    hub: str | None = None

    def __post_init__(self) -> None:
        if not self.results:
            raise ConfigError("results: name at least one evaluation output folder or results.json")


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
        if result is None:
            result = _read_result(file)
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
        details = tables["details"]
        if details is not None:
            details = details[details["model"] == model].drop(columns="model").reset_index(drop=True)
        runs.append(Run({"model": model, "benchmarks": benchmarks}, details, origin))
    return runs


def run_leaderboard(cfg: LeaderboardConfig) -> tuple[list[Run], dict[str, Path], Any]:
    """Join the runs into the leaderboard files; publish them when `publish_repo` is set."""
    runs = [run for source in cfg.results for run in load_runs(source, cfg.hub)]
    files = write_leaderboard(runs, cfg.output_dir)
    published = None
    if cfg.publish_repo:
        published = push_leaderboard(runs, files, cfg.publish_repo, cfg.publish_version, hub=cfg.hub)
    return runs, files, published


def benchmark_order(runs: list[Run]) -> list[str]:
    seen = {name for r in runs for name in r.benchmarks}
    return [b for b in BENCHMARKS if b in seen] + sorted(seen - set(BENCHMARKS))


def table_rows(runs: list[Run]) -> list[dict[str, Any]]:
    """One row per run: per-benchmark mean/std, the average, the rare-disease column, the recovery rate.

    The average is over the non-rare benchmarks the run has (the rare-disease column stands apart, as in
    the paper); runs with different benchmark sets are flagged by their `benchmarks` count.
    """
    names = benchmark_order(runs)
    rows = []
    for r in runs:
        b = r.benchmarks
        row: dict[str, Any] = {"model": r.model, "from": r.origin}
        for name in names:
            row[f"{name}_mean"] = b[name]["mean"] if name in b else None
            row[f"{name}_std"] = b[name]["std"] if name in b else None
        main = [v["mean"] for k, v in b.items() if not v.get("rare")]
        rare = [v["mean"] for v in b.values() if v.get("rare")]
        samples = sum(v["items"] * v["samples"] for v in b.values())
        row["average"] = statistics.fmean(main) if main else None
        row["rare_disease"] = statistics.fmean(rare) if rare else None
        for rule in EXTRACTIONS:  # both rules, where the run scored both (rescoring generates nothing)
            scored = [
                v[f"{rule}_mean"]
                for v in b.values()
                if not v.get("rare") and v.get(f"{rule}_mean") is not None
            ]
            row[f"average_{rule}"] = statistics.fmean(scored) if scored and len(scored) == len(main) else None
        row["recovery_rate"] = (
            sum(v["recovery_rate"] * v["items"] * v["samples"] for v in b.values()) / samples
            if samples
            else None
        )
        row["benchmarks"] = len(b)
        rows.append(row)
    return sorted(rows, key=lambda x: -(x["average"] or 0.0))


def result_rows(runs: list[Run]) -> list[dict[str, Any]]:
    """The published `results` split (`schema.RESULTS_FEATURES`): one row per model and benchmark, so
    tables from different runs and benchmark sets share one schema."""
    return [
        {
            "model": r.model,
            "benchmark": name,
            **{k: publishable(v) for k, v in b.items() if k in RESULTS_FEATURES},
            **{f"recovery_{k}": v for k, v in _recovery(b).items()},
            **{f"{m}_at_n": _at_n(b, m) for m in ("maj", "pass")},
        }
        for r in runs
        for name, b in r.benchmarks.items()
    ]


def _at_n(bench: dict[str, Any], metric: str) -> float | None:
    """maj@n or pass@n at n = the run's samples: from results.json's `<metric>@k`, or as a published
    table already holds it."""
    by_k = bench.get(f"{metric}@k") or {}
    return by_k.get(str(bench.get("samples")), bench.get(f"{metric}_at_n"))


def _recovery(bench: dict[str, Any]) -> dict[str, Any]:
    """The official recovery pass a benchmark was scored with, as the results columns name it."""
    rec = bench.get("recovery") or {}
    return {
        "rule": rec.get("rule"),
        "family": rec.get("family"),
        "ids": rec.get("ids"),
        "tokens": rec.get("max_tokens"),
    }


def _pct(mean: float | None, std: float | None = None) -> str:
    if mean is None:
        return "–"
    return f"{100 * mean:.1f} ± {100 * std:.1f}" if std is not None else f"{100 * mean:.1f}"


def render_markdown(runs: list[Run]) -> str:
    names = benchmark_order(runs)
    rows = table_rows(runs)
    head = ["model", *(md_cell(title(n)) for n in names), "average", "rare-disease", "official", "lenient"]
    head += ["recovered", "from"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" + "---:|" * (len(head) - 2) + "---|"]
    for row in rows:
        model = md_cell(row["model"]).replace("`", "'")  # user text: one cell, no markup, no code-span break
        cells = [f"`{model}`", *(_pct(row[f"{n}_mean"], row[f"{n}_std"]) for n in names)]
        cells += [_pct(row["average"]), _pct(row["rare_disease"]), _pct(row["average_official"])]
        cells += [_pct(row["average_lenient"]), _pct(row["recovery_rate"]), md_cell(row["from"])]
        lines.append("| " + " | ".join(cells) + " |")
    read = sorted({b.get("extraction") or "unrecorded" for r in runs for b in r.benchmarks.values()})
    rare = sorted({md_cell(title(n)) for r in runs for n, b in r.benchmarks.items() if b.get("rare")}) or [
        "RareDis-Sub"
    ]
    passes = sorted(
        {
            f"{rec['rule']} rule, family {rec['family']}, {rec['tokens']} token(s), ids {rec['ids']}"
            for r in runs
            for b in r.benchmarks.values()
            if (rec := _recovery(b))["rule"]
        }
    )
    note = (
        "\nAccuracy (%), mean ± std over samples; average over the non-rare benchmarks; rare-disease: "
        f"{' and '.join(rare)}; official / lenient: the average under each rule, on the same generations; "
        "recovered: share of answers from the constrained second pass. Answers read by the "
        f"{' / '.join(read)} rule{' (mixed: rows are not comparable)' if len(read) > 1 else ''}."
        + (f" Official recovery pass: {'; '.join(passes)}." if passes else "")
        + "\n"
    )
    return "\n".join(lines) + "\n" + note


def render_csv(runs: list[Run]) -> str:
    rows = table_rows(runs)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def plot(runs: list[Run], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = benchmark_order(runs)
    rows = table_rows(runs)
    width = 0.8 / max(1, len(rows))
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(names) + 2), 4))
    for k, row in enumerate(rows):
        xs = [i + k * width for i in range(len(names))]
        means = [100 * (row[f"{n}_mean"] or 0) for n in names]
        stds = [100 * (row[f"{n}_std"] or 0) for n in names]
        ax.bar(xs, means, width, yerr=stds, capsize=2, label=row["model"])
    ax.set_xticks([i + width * (len(rows) - 1) / 2 for i in range(len(names))])
    ax.set_xticklabels([title(n) for n in names], rotation=30, ha="right")
    ax.set_ylabel("accuracy (%)")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_leaderboard(runs: list[Run], output: str | Path) -> dict[str, Path]:
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    public = [{**r.result, "from": r.origin} for r in runs]
    files = {
        "md": atomic_write_text(out / "leaderboard.md", render_markdown(runs)),
        "csv": atomic_write_text(out / "leaderboard.csv", render_csv(runs)),
        "json": atomic_write_json(out / "leaderboard.json", {"rows": table_rows(runs), "runs": public}),
        "png": plot(runs, out / "leaderboard.png"),
    }
    return {k: Path(v) for k, v in files.items()}


def push_leaderboard(
    runs: list[Run],
    files: dict[str, Path],
    repo_id: str,
    version: str,
    hub: str | None = None,
):
    """Publish the table and every run's per-item details as a dataset with a card.

    `files` is what `write_leaderboard` wrote for these results; the release goes beside them.
    """
    release = files["png"].parent / "release"
    atomic_write_parquet(release / "data" / "results-00000.parquet", result_rows(runs), RESULTS_FEATURES)
    details = [r.details.assign(model=r.model) for r in runs if r.details is not None and len(r.details)]
    if details:
        frame = pd.concat(details, ignore_index=True)
        atomic_write_parquet(
            release / "data" / "details-00000.parquet", frame.to_dict("records"), LEADERBOARD_DETAILS_FEATURES
        )
    (release / "leaderboard.png").write_bytes(files["png"].read_bytes())
    splits = ["results", *(["details"] if details else [])]
    card = dataset_card(
        repo_id=repo_id,
        version=version,
        pretty_name=f"{repo_id.split('/')[-1]} (evaluation)",
        summary=(
            f"Evaluation of {len(runs)} model(s) on {len(benchmark_order(runs))} benchmarks with the "
            "MedSSR protocol: config `results` holds the leaderboard (one row per model and benchmark), "
            "config `details` one row per item and sample."
        ),
        stage="evaluation",
        num_rows=sum(len(d) for d in details) or len(runs),
        # One config each: the two tables have different columns (`load_dataset(repo, "details")`).
        configs={name: {"train": f"data/{name}-*.parquet"} for name in splits},
        provenance={
            "models": ", ".join(r.model for r in runs),
            "runs from": ", ".join(dict.fromkeys(r.origin for r in runs)),
        },
        evaluation=render_markdown(runs),
        plots={"Leaderboard": "leaderboard.png"},
        config={r.model: publishable(r.result.get("config", {})) for r in runs},
        tags=["evaluation", "leaderboard"],
    )
    result = publish(release, repo_id, version, card=card, hub=hub)
    # The same leaderboard as an app: a Gradio Space of the same name and version reading this dataset.
    push_space(repo_id, version, [f"{repo_id}@{version}"], hub=hub)
    return result
