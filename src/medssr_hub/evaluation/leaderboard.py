"""Leaderboards: runs of several models/checkpoints joined into markdown, CSV, JSON and a PNG chart.

`publish_repo` publishes the table and the per-item details of every run as a versioned Hub dataset
(`data/results-*.parquet`, `data/details-*.parquet`) with a card.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from medssr_hub.config import ConfigError, publishable
from medssr_hub.evaluation.registry import BENCHMARKS, title
from medssr_hub.hub import publish
from medssr_hub.hub.cards import dataset_card
from medssr_hub.schema import LEADERBOARD_DETAILS_FEATURES, RESULTS_FEATURES
from medssr_hub.utils import atomic_write_json, atomic_write_parquet, atomic_write_text

logger = logging.getLogger(__name__)


@dataclass
class LeaderboardConfig:
    """`medssr-hub leaderboard --results RUN_DIR [RUN_DIR ...] --output_dir DIR [--publish_repo ORG/NAME]`."""

    results: list[str] = field(default_factory=list)  # results.json files or evaluation output folders
    output_dir: str = "outputs/leaderboard"
    publish_repo: str | None = None  # publish `results` and per-item `details` as this dataset
    publish_version: str = "v0.1.0"
    hub: str | None = None

    def __post_init__(self) -> None:
        if not self.results:
            raise ConfigError("results: name at least one evaluation output folder or results.json")


def run_leaderboard(cfg: LeaderboardConfig) -> tuple[list[dict[str, Any]], dict[str, Path], Any]:
    """Join the runs into the leaderboard files; publish them when `publish_repo` is set."""
    results = [load_result(p) for p in cfg.results]
    files = write_leaderboard(results, cfg.output_dir)
    published = None
    if cfg.publish_repo:
        published = push_leaderboard(results, files, cfg.publish_repo, cfg.publish_version, hub=cfg.hub)
    return results, files, published


def load_result(path: str | Path) -> dict[str, Any]:
    """A run's results.json (or the folder holding it), with the folder remembered for its details."""
    path = Path(path)
    file = path / "results.json" if path.is_dir() else path
    if not file.exists():
        raise FileNotFoundError(f"{path}: no results.json (run `medssr-hub evaluate ... --output DIR` first)")
    try:
        result = json.loads(file.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{file}: not valid JSON ({e})") from e
    if not isinstance(result, dict) or "benchmarks" not in result or "model" not in result:
        raise ValueError(f"{file}: not an evaluation result (needs 'model' and 'benchmarks')")
    result["_folder"] = str(file.parent)
    return result


def benchmark_order(results: list[dict[str, Any]]) -> list[str]:
    seen = {name for r in results for name in r["benchmarks"]}
    return [b for b in BENCHMARKS if b in seen] + sorted(seen - set(BENCHMARKS))


def table_rows(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per run: per-benchmark mean/std, the average, the rare-disease column, the recovery rate.

    The average is over the non-rare benchmarks the run has (the rare-disease column stands apart, as in
    the paper); runs with different benchmark sets are flagged by their `benchmarks` count.
    """
    names = benchmark_order(results)
    rows = []
    for r in results:
        b = r["benchmarks"]
        row: dict[str, Any] = {"model": r["model"]}
        for name in names:
            row[f"{name}_mean"] = b[name]["mean"] if name in b else None
            row[f"{name}_std"] = b[name]["std"] if name in b else None
        main = [v["mean"] for k, v in b.items() if not v.get("rare")]
        rare = [v["mean"] for v in b.values() if v.get("rare")]
        samples = sum(v["items"] * v["samples"] for v in b.values())
        row["average"] = statistics.fmean(main) if main else None
        row["rare_disease"] = statistics.fmean(rare) if rare else None
        row["recovery_rate"] = (
            sum(v["recovery_rate"] * v["items"] * v["samples"] for v in b.values()) / samples
            if samples
            else None
        )
        row["benchmarks"] = len(b)
        rows.append(row)
    return sorted(rows, key=lambda x: -(x["average"] or 0.0))


def result_rows(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The published `results` split (`schema.RESULTS_FEATURES`): one row per model and benchmark, so
    tables from different runs and benchmark sets share one schema."""
    return [
        {
            "model": r["model"],
            "benchmark": name,
            **{k: publishable(v) for k, v in b.items() if k in RESULTS_FEATURES},
        }
        for r in results
        for name, b in r["benchmarks"].items()
    ]


def _pct(mean: float | None, std: float | None = None) -> str:
    if mean is None:
        return "–"
    return f"{100 * mean:.1f} ± {100 * std:.1f}" if std is not None else f"{100 * mean:.1f}"


def render_markdown(results: list[dict[str, Any]]) -> str:
    names = benchmark_order(results)
    rows = table_rows(results)
    head = ["model", *(title(n) for n in names), "average", "rare-disease", "recovered"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" + "---:|" * (len(head) - 1)]
    for row in rows:
        cells = [f"`{row['model']}`", *(_pct(row[f"{n}_mean"], row[f"{n}_std"]) for n in names)]
        cells += [_pct(row["average"]), _pct(row["rare_disease"]), _pct(row["recovery_rate"])]
        lines.append("| " + " | ".join(cells) + " |")
    note = (
        "\nAccuracy (%), mean ± std over samples; average over the non-rare benchmarks; rare-disease: "
        "RareDis-Sub; recovered: share of answers from the constrained second pass.\n"
    )
    return "\n".join(lines) + "\n" + note


def render_csv(results: list[dict[str, Any]]) -> str:
    rows = table_rows(results)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def plot(results: list[dict[str, Any]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = benchmark_order(results)
    rows = table_rows(results)
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


def write_leaderboard(results: list[dict[str, Any]], output: str | Path) -> dict[str, Path]:
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    public = [{k: v for k, v in r.items() if not k.startswith("_")} for r in results]
    files = {
        "md": atomic_write_text(out / "leaderboard.md", render_markdown(results)),
        "csv": atomic_write_text(out / "leaderboard.csv", render_csv(results)),
        "json": atomic_write_json(out / "leaderboard.json", {"rows": table_rows(results), "runs": public}),
        "png": plot(results, out / "leaderboard.png"),
    }
    return {k: Path(v) for k, v in files.items()}


def push_leaderboard(
    results: list[dict[str, Any]],
    files: dict[str, Path],
    repo_id: str,
    version: str,
    hub: str | None = None,
):
    """Publish the table and every run's per-item details as a dataset with a card.

    `files` is what `write_leaderboard` wrote for these results; the release goes beside them.
    """
    release = files["png"].parent / "release"
    atomic_write_parquet(release / "data" / "results-00000.parquet", result_rows(results), RESULTS_FEATURES)
    details = []
    for r in results:
        for f in sorted((Path(r["_folder"]) / "details").glob("*.parquet")):
            details.append(pd.read_parquet(f).assign(model=r["model"]))
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
            f"Evaluation of {len(results)} model(s) on {len(benchmark_order(results))} benchmarks with the "
            "MedSSR protocol: config `results` holds the leaderboard (one row per model and benchmark), "
            "config `details` one row per item and sample."
        ),
        stage="evaluation",
        num_rows=sum(len(d) for d in details) or len(results),
        # One config each: the two tables have different columns (`load_dataset(repo, "details")`).
        configs={name: {"train": f"data/{name}-*.parquet"} for name in splits},
        provenance={"models": ", ".join(r["model"] for r in results)},
        evaluation=render_markdown(results),
        plots={"Leaderboard": "leaderboard.png"},
        config={r["model"]: publishable(r.get("config", {})) for r in results},
        tags=["evaluation", "leaderboard"],
    )
    return publish(release, repo_id, version, card=card, hub=hub)
