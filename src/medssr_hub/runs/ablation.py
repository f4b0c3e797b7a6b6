"""The ablation table, one command: `medssr-hub ablation --config recipes/ablation/smollm2_cpu.yaml`.

From one config it trains and evaluates the rows a reviewer asks for side by side, on the same data:

| row | training |
|---|---|
| base | none |
| sft | SFT on the pseudo-labeled synthetic set (each question's label, with the policy's own reasoning that voted for it) |
| stage2_only | stage 2 from the base model, on the held-out gold-keyed questions |
| medssr | stage 1 on the offline pseudo-labels (MedSSR) |
| ttrl | stage 1 on the group's online majority vote (TTRL, `target: vote`) |
| oracle | stage 1 on the construction keys (`target: key`) |
| medssr_stage2 | stage 1 (the medssr row's model) then stage 2 |

Columns, each with a 95% bootstrap interval over questions: held-out keyed vignettes (answers known by
construction, of diseases no row trained on); the catalogue-matched rare-disease subset of the benchmarks;
the benchmarks' average under the official and the lenient rule (resampled within each benchmark); and,
where a row trains on votes, the label accuracy against the keys (offline: over the labeled questions;
online: over the training steps' logged values). It writes `ablation.{md,csv,json,png}`, the leaderboard
of the rows (published with per-item details) and resumes after an interrupt: every step does.
"""

from __future__ import annotations

import functools
import json
import logging
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd

from medssr_hub.config import JsonDict, config_from_dict
from medssr_hub.errors import ConfigError
from medssr_hub.evaluation.leaderboard import push_leaderboard, write_leaderboard
from medssr_hub.evaluation.stats import bootstrap_ci, stratified_bootstrap_ci
from medssr_hub.field_help import arg, documented
from medssr_hub.labeling.release import LabelingSummary
from medssr_hub.records import load_records
from medssr_hub.resume import config_dict, guard_resume
from medssr_hub.runs.method_check import KEYED_FILE, keyed_vignettes_file
from medssr_hub.runs.settings import RunSettings
from medssr_hub.runs.steps import (
    base_backend,
    benchmark_files,
    distill_path,
    evaluate_model,
    heldout_data,
    labeled_data,
    leaderboard_release,
    train_stage,
)
from medssr_hub.training import grpo, sft
from medssr_hub.training.summary import SUMMARY_FILE, TrainingSummary
from medssr_hub.utils import atomic_write_json, atomic_write_text

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Row:
    name: str
    title: str
    stage: str | None = None  # stage1 | stage2 | sft; None: the base model
    target: str | None = None
    start: str = "base"  # the row whose model it starts from


ROWS = (
    Row("base", "base"),
    Row("sft", "SFT on the synthetic set", "sft"),
    Row("stage2_only", "stage 2 only", "stage2", "answer"),
    Row("medssr", "stage 1, offline labels (MedSSR)", "stage1", "label"),
    Row("ttrl", "stage 1, online votes (TTRL)", "stage1", "vote"),
    Row("oracle", "stage 1, construction keys (oracle)", "stage1", "key"),
    Row("medssr_stage2", "stage 1 then stage 2", "stage2", "answer", start="medssr"),
)
BY_NAME = {r.name: r for r in ROWS}
COLUMNS = ("keyed", "rare", "official", "lenient", "label_accuracy")
TITLES = {
    "keyed": "held-out keyed vignettes",
    "rare": "rare-disease subset",
    "official": "benchmarks, official",
    "lenient": "benchmarks, lenient",
    "label_accuracy": "label accuracy vs keys",
}


@documented
@dataclass
class AblationRows:
    """The ablation's own settings, beside the run settings it shares with the demo: which rows, the sft
    row's training, and where the rows' models are published."""

    rows: list[str] = arg(
        "the rows to train and evaluate, in table order: base, sft, stage2_only, medssr, ttrl, oracle, "
        "medssr_stage2 (a row that starts from another trains that one too)",
        default_factory=lambda: [r.name for r in ROWS],
    )
    sft: JsonDict | None = arg("the sft row's training: `config` (a recipe YAML) plus overrides", None)
    models_repo: str = arg(
        "each trained row is published as model repo <models_repo>-<row> (version publish_version)",
        "medssr-hub/ablation",
    )

    def __post_init__(self) -> None:
        self.sft = JsonDict(self.sft) if self.sft is not None else None
        unknown = [r for r in self.rows if r not in BY_NAME]
        if unknown:
            raise ConfigError(f"rows: unknown {unknown}; choose from {', '.join(BY_NAME)}")


@dataclass(frozen=True)
class AblationConfig:
    """`medssr-hub ablation --config recipes/ablation/smollm2_cpu.yaml`: the run settings the demo reads
    (`run`: data, the stage 1 and 2 trainings every row of that stage shares, evaluation) and the table's
    own (`table`). One YAML holds both, each key once: they are parsed together, as TRL's scripts read
    their three dataclasses."""

    run: RunSettings
    table: AblationRows
    PARTS: ClassVar[tuple[type, ...]] = (RunSettings, AblationRows)
    # The run settings' defaults are the demo's; the ablation publishes and writes under its own names.
    DEFAULTS: ClassVar[dict[str, Any]] = {
        "publish_repo": "medssr-hub/ablation-leaderboard",
        "output_dir": "outputs/ablation",
    }

    def __post_init__(self) -> None:
        run = self.run
        for row in plan(self.table.rows):  # with the rows they start from
            if row.stage and not self.training(row.stage):
                raise ConfigError(f"row {row.name} trains {row.stage}: set `{row.stage}` in the config")
        if not run.synthesis or not run.labeling or not run.keyed_eval:
            raise ConfigError(
                "the ablation needs synthesis, labeling and keyed_eval (its data and first column)"
            )

    @classmethod
    def from_dict(cls, values: dict[str, Any], yaml_file: str | Path | None = None) -> AblationConfig:
        """For Python callers: `values` over a YAML file's, over the ablation's defaults."""
        return cls(*config_from_dict(cls.PARTS, values, yaml_file=yaml_file, defaults=cls.DEFAULTS))

    def training(self, stage: str) -> JsonDict | None:
        """The settings every row of a stage (stage1, stage2, sft) trains with."""
        return {"stage1": self.run.stage1, "stage2": self.run.stage2, "sft": self.table.sft}[stage]

    def as_dict(self) -> dict[str, Any]:
        """Both parts as one mapping, each key as the YAML spells it."""
        return config_dict(self.run) | config_dict(self.table)

    def run_fingerprint(self) -> dict[str, Any]:
        return self.run.run_fingerprint() | {"sft": self.table.sft, "models_repo": self.table.models_repo}


def plan(names: list[str]) -> list[Row]:
    """The rows to run, each after the row it starts from (added when not asked for: it is trained, but
    only the asked rows are in the table)."""
    order: list[Row] = []
    for name in names:
        chain = [BY_NAME[name]]
        while chain[-1].start != "base":
            chain.append(BY_NAME[chain[-1].start])
        order += [r for r in reversed(chain) if r not in order]
    return order


def train_rows(cfg: AblationConfig, rows: list[Row], labeled, heldout) -> dict[str, TrainingSummary]:
    trained: dict[str, TrainingSummary] = {}
    run = cfg.run
    for row in rows:
        if row.stage is None:
            continue
        settings = dict(cfg.training(row.stage) or {})
        settings.setdefault("config", f"recipes/smollm2/{row.stage}.yaml")
        settings |= {"publish_repo": f"{cfg.table.models_repo}-{row.name}"}
        settings |= {"publish_version": run.publish_version}
        if row.target:
            settings["target"] = row.target
        start = (run.model, None) if row.start == "base" else trained[row.start].model
        data = {"stage1": labeled, "stage2": heldout}.get(row.stage) or (str(distill_path(run)), None)
        module = sft if row.stage == "sft" else grpo
        trained[row.name] = train_stage(run, row.name, settings, model=start, data=data, module=module)
    return trained


@dataclass(frozen=True)
class AblationSummary:
    """What an ablation run did: its table (row -> cells), each trained row's summary, the labeling's, and
    where the rows' leaderboard was published."""

    config: AblationConfig
    rows: dict[str, dict[str, Any]]
    trained: dict[str, TrainingSummary]
    labeling: LabelingSummary | None
    published: str | None = None

    def record(self) -> dict[str, Any]:
        """As `ablation.json` holds it."""
        record = {
            "config": self.config.as_dict(),
            "rows": self.rows,
            "trained": {name: t.record() | {"model": list(t.model)} for name, t in self.trained.items()},
            "labeling": dict(self.labeling.stats) if self.labeling else None,
        }
        return record | ({"published": self.published} if self.published else {})


def run_ablation(cfg: AblationConfig) -> AblationSummary:
    run = cfg.run
    benchmark_files(run)  # a missing input is reported first, before the resume and publish checks
    out = Path(run.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    guard_resume(out, cfg.run_fingerprint(), "ablation")
    release = leaderboard_release(run, cfg.as_dict())
    data = labeled_data(run)
    if data.labeled is None:
        raise ConfigError("labeling.publish_repo must be set: the training rows read the labels by version")
    rows = plan(cfg.table.rows)
    heldout = None
    if any(r.stage == "stage2" for r in rows):
        if not run.heldout:
            raise ConfigError("rows stage2_only and medssr_stage2 train on `heldout`: set it in the config")
        _, heldout = heldout_data(run)
    trained = train_rows(cfg, rows, data.labeled, heldout)

    backend, keyed = base_backend(run), keyed_vignettes_file(run)
    runs, table = [], {}
    try:
        for row in (BY_NAME[name] for name in cfg.table.rows):
            model = run.model if row.stage is None else str(out / row.name / "final")
            shared = backend if row.stage is None else None
            done = evaluate_model(run, row.name, model, row.title, keyed, shared)
            runs.append(done.run)
            table[row.name] = {
                "title": row.title,
                **cells(done.out, done.keyed_out),
                "label_accuracy": label_cell(row, run),
            }
    finally:
        backend.close()
    files = write_leaderboard(runs, out / "leaderboard")
    published = push_leaderboard(runs, files, release).described if run.publish_repo else None
    summary = AblationSummary(cfg, table, trained, data.labeling, published)
    atomic_write_json(out / "ablation.json", summary.record())
    atomic_write_text(out / "ablation.md", render_table(table))
    atomic_write_text(out / "ablation.csv", render_csv(table))
    plot_table(table, out / "ablation.png")
    logger.info("Ablation table in %s (ablation.md, .csv, .json, .png)", out)
    return summary


def per_item(folder: Path, column: str = "correct") -> dict[str, list[float]]:
    """Each benchmark's per-question accuracy (mean over samples) from an evaluation's details."""
    out = {}
    for path in sorted((folder / "details").glob("*.parquet")):
        frame = pd.read_parquet(path)
        if column in frame and frame[column].notna().all():
            out[path.stem] = frame.groupby("id", sort=True)[column].mean().astype(float).tolist()
    return out


def cell(values: list[float], interval: tuple[float, float] | None = None) -> dict[str, Any] | None:
    if not values:
        return None
    lo, hi = interval or bootstrap_ci(values)
    return {"mean": statistics.fmean(values), "ci95": [lo, hi], "n": len(values)}


def cells(bench_out: Path, keyed_out: Path) -> dict[str, Any]:
    """keyed, rare, official and lenient for one row, from its two evaluations' details."""
    results = json.loads((bench_out / "results.json").read_text())["benchmarks"]
    rare = {name for name, b in results.items() if b.get("rare")}
    keyed = per_item(keyed_out).get(Path(KEYED_FILE).stem, [])
    items = per_item(bench_out)  # read once: the rare column's questions
    out = {"keyed": cell(keyed), "rare": cell([v for name in rare for v in items[name]])}
    for rule in ("official", "lenient"):
        groups = {k: v for k, v in per_item(bench_out, f"{rule}_correct").items() if k not in rare}
        if groups:
            mean = statistics.fmean(statistics.fmean(g) for g in groups.values())
            lo, hi = stratified_bootstrap_ci(list(groups.values()))
            out[rule] = {"mean": mean, "ci95": [lo, hi], "n": sum(len(g) for g in groups.values())}
        else:
            out[rule] = None
    return out


def label_cell(row: Row, cfg: RunSettings) -> dict[str, Any] | None:
    """How often the labels a row trained on were the construction keys: offline pseudo-labels over the
    labeled questions with a key; online votes over the training steps' logged label accuracy; the oracle
    trains on the keys themselves."""
    first = row if row.start == "base" else BY_NAME[row.start]
    if first.target == "key":
        return {"mean": 1.0, "ci95": [1.0, 1.0], "n": 0}
    if first.target == "vote":
        summary = json.loads((Path(cfg.output_dir) / first.name / "final" / SUMMARY_FILE).read_text())
        return cell(
            [h["medssr/label_accuracy"] for h in summary["log_history"] if "medssr/label_accuracy" in h]
        )
    if first.target == "label" or first.stage == "sft":
        return offline_label_accuracy(
            cfg.labeling["publish_repo"], cfg.labeling.get("publish_version"), cfg.hub
        )
    return None


@functools.cache
def offline_label_accuracy(repo: str, version: str | None, hub: str | None) -> dict[str, Any] | None:
    """The published pseudo-labels against the keys, read once for every row that trained on them."""
    records = load_records(repo, revision=version, hub=hub, split="train")[0]
    return cell([float(r.columns.get("label") == r.key) for r in records if r.key])


def _fmt(c: dict[str, Any] | None) -> str:
    if c is None:
        return "–"
    lo, hi = c["ci95"]
    return f"{100 * c['mean']:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]"


def render_table(table: dict[str, dict[str, Any]]) -> str:
    head = ["row", *(TITLES[c] for c in COLUMNS)]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * len(COLUMNS)]
    for row in table.values():
        lines.append("| " + " | ".join([row["title"], *(_fmt(row[c]) for c in COLUMNS)]) + " |")
    return "\n".join(lines) + (
        "\n\nAccuracy (%) [95% bootstrap interval over questions; the benchmarks' average resampled within each "
        "benchmark; online label accuracy over training steps]. Label accuracy: how often the labels the row "
        "trained on were the construction keys.\n"
    )


def render_csv(table: dict[str, dict[str, Any]]) -> str:
    frame = pd.DataFrame(
        [
            {"row": name, "title": row["title"]}
            | {
                f"{c}{part}": (row[c] or {}).get(key)
                for c in COLUMNS
                for part, key in (("", "mean"), ("_n", "n"))
            }
            | {
                f"{c}_ci_{end}": (row[c]["ci95"][i] if row[c] else None)
                for c in COLUMNS
                for i, end in enumerate(("low", "high"))
            }
            for name, row in table.items()
        ]
    )
    return frame.to_csv(index=False)


def plot_table(table: dict[str, dict[str, Any]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(12, 4))
    width = 0.8 / max(1, len(table))
    for i, row in enumerate(table.values()):
        xs = [j + i * width for j in range(len(COLUMNS))]
        means = [100 * row[c]["mean"] if row[c] else float("nan") for c in COLUMNS]  # "–": no bar
        errs = [
            [100 * (row[c]["mean"] - row[c]["ci95"][0]) if row[c] else 0.0 for c in COLUMNS],
            [100 * (row[c]["ci95"][1] - row[c]["mean"]) if row[c] else 0.0 for c in COLUMNS],
        ]
        ax.bar(xs, means, width, yerr=errs, capsize=2, label=row["title"])
    ax.set_xticks([j + width * (len(table) - 1) / 2 for j in range(len(COLUMNS))])
    ax.set_xticklabels([TITLES[c] for c in COLUMNS], rotation=15, ha="right")
    ax.set_ylabel("accuracy (%), 95% CI")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the bars, never over them
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
