"""Leaderboards: runs of several models/checkpoints joined into markdown, CSV, JSON and a PNG chart.

A run is an evaluation output folder (its `results.json` and `details/`) or a published leaderboard
(`ORG/NAME@version`, from the local hub or the Hub): reproductions published by different people join
into one table, each row saying where it came from. `publish_repo` publishes the table and the per-item
details of every run as a versioned Hub dataset (configs `results` and `details`) with a card.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from medssr_hub.config import JsonDict, config_from_dict
from medssr_hub.errors import ConfigError
from medssr_hub.evaluation.registry import title
from medssr_hub.evaluation.runs import Run, load_runs
from medssr_hub.evaluation.space import push_space
from medssr_hub.evaluation.stats import bootstrap_ci
from medssr_hub.evaluation.tables import (
    benchmark_order,
    ranking_rows,
    render_csv,
    render_markdown,
    result_rows,
    table_rows,
)
from medssr_hub.field_help import arg, documented
from medssr_hub.hub import StageRelease
from medssr_hub.hub.cards import dataset_card
from medssr_hub.paths import recipe_path
from medssr_hub.published import publishable
from medssr_hub.schema import LEADERBOARD_DETAILS_FEATURES, RANKING_FEATURES, RESULTS_FEATURES
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
    evaluate: list[str] = arg(
        "evaluation configs (YAML) to run first, one after the other, each resuming where it stopped; their "
        "output folders join `results` (recipes/leaderboard/paper_table.yaml: the paper's comparison)",
        default_factory=list,
    )
    evaluate_overrides: JsonDict = arg(
        "fields set on every config of `evaluate` (a rehearsal: {model: embedded, backend: embedded, "
        "max_items: 2}); each row keeps its display_name",
        default_factory=JsonDict,
    )
    evaluate_root: str | None = arg(
        "write each evaluation of `evaluate` to ROOT/<config file stem> instead of its own output_dir", None
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
        self.evaluate_overrides = JsonDict(self.evaluate_overrides)
        if not self.results and not self.evaluate:
            raise ConfigError(
                "results: name at least one evaluation output folder or results.json (or evaluate: configs)"
            )

    def evaluations(self) -> list:
        """The `evaluate` configs as EvalConfigs, overrides applied: every one is read (and refused on a bad
        field) before the first one runs."""
        from medssr_hub.evaluation.config import EvalConfig

        configs = []
        for name in self.evaluate:
            path = recipe_path(name)
            values = dict(self.evaluate_overrides)
            if self.evaluate_root:
                values["output_dir"] = str(Path(self.evaluate_root) / path.stem)
            (cfg,) = config_from_dict([EvalConfig], values, yaml_file=path)
            configs.append(cfg)
        names = [cfg.display_name for cfg in configs]
        if len(set(names)) != len(names):
            raise ConfigError(f"evaluate: two configs share a display_name ({names}); rows must differ")
        return configs


def run_leaderboard(cfg: LeaderboardConfig) -> tuple[list[Run], dict[str, Path], Any]:
    """Join the runs into the leaderboard files; publish them when `publish_repo` is set."""
    from medssr_hub.evaluation.evaluate import run_evaluation

    evaluated = []
    for evaluation in cfg.evaluations():
        logger.info("Evaluating %s into %s", evaluation.display_name, evaluation.output_dir)
        run_evaluation(evaluation)
        evaluated.append(evaluation.output_dir)
    runs = [run for source in [*evaluated, *cfg.results] for run in load_runs(source, cfg.hub)]
    release = leaderboard_release(runs, cfg.publish_repo, cfg.publish_version, cfg.hub)
    release.check()  # a version published from other runs stops here, before any file is written
    files = write_leaderboard(runs, cfg.output_dir)
    published = push_leaderboard(runs, files, release) if cfg.publish_repo else None
    return runs, files, published


def run_configs(runs: list[Run]) -> dict[str, Any]:
    """Each run's evaluation settings, by model: what the card shows."""
    return {r.model: publishable(r.result.get("config", {})) for r in runs}


def leaderboard_release(runs: list[Run], repo_id: str | None, version: str, hub: str | None) -> StageRelease:
    """The release of a leaderboard that is the whole job: its settings are its runs' configs. (The demo
    and the ablation publish theirs under their own config, checked before their first step.)"""
    return StageRelease(repo_id, version, run_configs(runs), hub)


def item_scores(run: Run, benchmark: str) -> list[float]:
    """Each question's accuracy (the mean over its samples) on one benchmark, from the run's details."""
    details = run.details
    if details is None or not len(details) or "benchmark" not in details:
        return []
    rows = details[details["benchmark"] == benchmark]
    return [float(v) for v in rows.groupby("id", sort=True)["correct"].mean()] if len(rows) else []


def plot(runs: list[Run], path: Path) -> Path:
    """Accuracy per benchmark and model: bars with 95% bootstrap intervals over questions (`stats`), the
    number of questions under each benchmark, a dashed chance line (1 / options offered), a fixed 0-100
    axis, and each bar's value written on it, so that a zero is seen, not missed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = benchmark_order(runs)
    rows = table_rows(runs)
    by_model = {r.model: r for r in runs}
    width = 0.8 / max(1, len(rows))
    fig, ax = plt.subplots(figsize=(max(7, 1.3 * len(names) + 2.5) + 2.5, 4.6))  # + the legend's column
    for k, row in enumerate(rows):
        run = by_model[row["model"]]
        xs, means, low, high = [], [], [], []
        for i, name in enumerate(names):
            if row[f"{name}_mean"] is None:
                continue
            mean = 100 * row[f"{name}_mean"]
            scores = item_scores(run, name)
            lo, hi = bootstrap_ci(scores) if scores else (mean / 100, mean / 100)
            xs.append(i + k * width)
            means.append(mean)
            low.append(max(0.0, mean - 100 * lo))
            high.append(max(0.0, 100 * hi - mean))
        ax.bar(xs, means, width, yerr=[low, high], capsize=2, label=row["model"], edgecolor="black",
                      linewidth=0.6)  # fmt: skip
        for x, m in zip(
            xs, means, strict=True
        ):  # beside the interval's line, at the bar's top: a 0 shows as 0
            ax.annotate(f"{m:.0f}", (x, m), textcoords="offset points", xytext=(3, 2), fontsize=7)
    centre = width * (len(rows) - 1) / 2
    for i, name in enumerate(names):
        chances = [r.benchmarks[name]["chance"] for r in runs if r.benchmarks.get(name, {}).get("chance")]
        if chances:
            ax.hlines(100 * max(chances), i - width / 2, i + 2 * centre + width / 2, colors="grey",
                      linestyles="dashed", linewidth=1, label="chance" if i == 0 else None)  # fmt: skip
    counts = {n: sorted({r.benchmarks[n]["items"] for r in runs if n in r.benchmarks}) for n in names}
    labels = [
        f"{title(n)}\n(n={c[0]})" if len(c) == 1 else f"{title(n)}\n(n={c[0]}-{c[-1]})"
        for n, c in counts.items()
    ]
    ax.set_xticks([i + centre for i in range(len(names))])
    ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylim(0, 100)
    ax.set_ylabel("accuracy (%)")
    ax.set_title("Accuracy, 95% bootstrap intervals over questions (n: questions)", fontsize=9)
    ax.legend(
        fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0
    )  # beside, not on, the bars
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


TABLES = ("results", "ranking", "details")  # a leaderboard's configs, in its card's order


def write_tables(runs: list[Run], folder: Path) -> dict[str, Path]:
    """`data/results-*`, `data/ranking-*` and (where the runs have them) `data/details-*` parquet tables in
    `folder`: what a leaderboard publishes, and what the Space reads. Returns each config's file."""
    data = folder / "data"
    for stale in data.glob("*-00000.parquet"):
        stale.unlink()
    tables = {
        "results": atomic_write_parquet(data / "results-00000.parquet", result_rows(runs), RESULTS_FEATURES),
        "ranking": atomic_write_parquet(data / "ranking-00000.parquet", ranking_rows(runs), RANKING_FEATURES),
    }
    details = [r.details.assign(model=r.model) for r in runs if r.details is not None and len(r.details)]
    if details:
        frame = pd.concat(details, ignore_index=True)
        tables["details"] = atomic_write_parquet(
            data / "details-00000.parquet", frame.to_dict("records"), LEADERBOARD_DETAILS_FEATURES
        )
    return {name: Path(path) for name, path in tables.items()}


def write_leaderboard(runs: list[Run], output: str | Path) -> dict[str, Path]:
    """The leaderboard's md, csv, json and png, and its tables (`write_tables`): the folder is a Space source
    (`medssr-hub space FOLDER`) as it is."""
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    public = [{**r.result, "from": r.origin} for r in runs]
    files = {
        **write_tables(runs, out),
        "md": atomic_write_text(out / "leaderboard.md", render_markdown(runs)),
        "csv": atomic_write_text(out / "leaderboard.csv", render_csv(runs)),
        "json": atomic_write_json(out / "leaderboard.json", {"rows": table_rows(runs), "runs": public}),
        "png": plot(runs, out / "leaderboard.png"),
    }
    return {k: Path(v) for k, v in files.items()}


def push_leaderboard(runs: list[Run], files: dict[str, Path], release: StageRelease):
    """Publish the table and every run's per-item details as a dataset with a card, through `release`
    (checked by the caller before its work).

    `files` is what `write_leaderboard` wrote for these results (its tables are copied, not rebuilt); the
    release goes beside them.
    """
    repo_id, version = release.repo_id, release.version
    folder = files["png"].parent / "release"
    (folder / "data").mkdir(parents=True, exist_ok=True)
    for stale in (folder / "data").glob("*.parquet"):
        stale.unlink()
    splits = [name for name in TABLES if name in files]
    for name in splits:
        shutil.copyfile(files[name], folder / "data" / files[name].name)
    details = [r.details for r in runs if r.details is not None and len(r.details)]
    shutil.copyfile(files["png"], folder / "leaderboard.png")
    card = dataset_card(
        repo_id=repo_id,
        version=version,
        pretty_name=f"{repo_id.split('/')[-1]} (evaluation)",
        summary=(
            f"Evaluation of {len(runs)} model(s) on {len(benchmark_order(runs))} benchmarks with the "
            "MedSSR protocol: config `results` holds the leaderboard (one row per model and benchmark), "
            "config `ranking` one row per model in the table's order with its averages, config `details` one "
            "row per item and sample."
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
        config=run_configs(runs),
        tags=["evaluation", "leaderboard"],
    )
    result = release.publish(folder, card)
    # The same leaderboard as an app: a Gradio Space of the same name and version reading this dataset.
    push_space(repo_id, version, [f"{repo_id}@{version}"], hub=release.hub)
    return result
