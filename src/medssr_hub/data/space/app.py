"""medssr-hub leaderboard: a Gradio app over one or more published leaderboards.

Each leaderboard is a dataset repo that `medssr-hub leaderboard --publish_repo` (or `medssr-hub demo`)
published: config `results` (one row per model and benchmark) and config `details` (one row per item and
sample). The app merges them, sorts and filters the table by benchmark, shows accuracy as mean ± std with
the rule that read the answers, and opens one model's per-item generations, predictions and gold.

It needs only gradio, pandas and huggingface_hub, so that it runs as a Hub Space (this file is the Space's
`app.py`, `leaderboards.json` beside it names what it shows) and locally:

    python app.py ORG/NAME@v0.1.0 [FOLDER ...] [--host 127.0.0.1] [--port 7860]
    medssr-hub space ORG/NAME@v0.1.0        # the same, reading the local hub first

A source is a folder holding `data/results-*.parquet` (a local copy) or `ORG/NAME@revision` on the Hub.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home, offline or not

import gradio as gr  # noqa: E402
import pandas as pd  # noqa: E402

HERE = Path(__file__).resolve().parent
ALL = "all benchmarks"
SORTS = ("accuracy, best first", "accuracy, worst first", "model, A-Z", "model, Z-A")
DETAIL_COLUMNS = ["id", "sample", "gold", "pred", "recovered", "correct", "generation"]
# Headers on one line at a laptop's width: a narrow column wraps its cells, never its header a letter a line.
CSS = "#leaderboard th, #leaderboard th * {white-space: nowrap; word-break: keep-all; overflow-wrap: normal}"
THEME = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["monospace"])
RANKING_COLUMNS = ["model", "average", "rare_disease", "recovery_rate", "maj_at_n", "pass_at_n", "benchmarks"]


def read_source(source: str) -> tuple[pd.DataFrame, pd.DataFrame | None, pd.DataFrame | None]:
    """(results, details, ranking) of one leaderboard: a folder (published, or as `medssr-hub leaderboard`
    writes it), or ORG/NAME@revision on the Hub."""
    folder = Path(source).expanduser()
    if not folder.is_dir():
        from huggingface_hub import snapshot_download

        repo, _, revision = source.partition("@")
        folder = Path(
            snapshot_download(repo, repo_type="dataset", revision=revision or None, allow_patterns=["data/*"])
        )
    tables = {}
    for config in ("results", "details", "ranking"):
        files = sorted((folder / "data").glob(f"{config}-*.parquet"))
        tables[config] = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True) if files else None
    if tables["results"] is None:
        raise SystemExit(f"{source}: not a published leaderboard (no data/results-*.parquet)")
    return tables["results"], tables["details"], tables["ranking"]


def merge(sources: list[tuple[str, str]]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """All leaderboards in one table, as `medssr-hub leaderboard` merges them: a model name that two
    sources both use is told apart by its source. The rankings (each model's averages, as the leaderboard
    computed them) are merged in the leaderboard's own order: by average, best first, ties as listed."""
    loaded = [(label, *read_source(source)) for label, source in sources]
    counts = pd.Series([m for _, results, _, _ in loaded for m in results["model"].unique()]).value_counts()
    results, details, rankings = [], [], []
    for label, res, det, rank in loaded:
        rename = {m: f"{m} [{label}]" for m in res["model"].unique() if counts[m] > 1}
        results.append(res.assign(model=res["model"].replace(rename), leaderboard=label))
        if det is not None:
            details.append(det.assign(model=det["model"].replace(rename)))
        if rank is not None:
            rankings.append(rank.assign(model=rank["model"].replace(rename), leaderboard=label))
    empty = pd.DataFrame(columns=["model", "benchmark", *DETAIL_COLUMNS])
    ranking = pd.concat(rankings, ignore_index=True) if rankings else pd.DataFrame(columns=RANKING_COLUMNS)
    ranking = ranking.sort_values("average", ascending=False, kind="stable", na_position="last")
    return (
        pd.concat(results, ignore_index=True),
        pd.concat(details, ignore_index=True) if details else empty,
        ranking.reset_index(drop=True),
    )


def rule(row: pd.Series) -> str:
    """How the answers were read: the extraction rule, and the recovery pass's rule where there was one."""
    recovery = row.get("recovery_rule")
    return (
        f"{row['extraction']} (recovery: {recovery})" if isinstance(recovery, str) else str(row["extraction"])
    )


def ranking_table(ranking: pd.DataFrame) -> pd.DataFrame:
    """All benchmarks: each model's averages as its leaderboard computed them (the `ranking` config), never
    recomputed here: the average over the non-rare benchmarks, the rare-disease column apart."""
    pct = lambda column: (100 * pd.to_numeric(ranking[column], errors="coerce")).round(1)  # noqa: E731
    return pd.DataFrame(
        {
            "model": ranking["model"],
            "average (%)": pct("average"),
            "rare-disease (%)": pct("rare_disease"),
            "recovered (%)": pct("recovery_rate"),
            "maj@n (%)": pct("maj_at_n"),
            "pass@n (%)": pct("pass_at_n"),
            "benchmarks": ranking["benchmarks"],
            "leaderboard": ranking.get("leaderboard", ""),
        }
    )


def leaderboard_table(results: pd.DataFrame, benchmark: str, sort: str, ranking=None) -> pd.DataFrame:
    """One row per model: its accuracy on `benchmark` ± std; for all benchmarks, its averages from the
    leaderboard's ranking, in the leaderboard's order."""
    if benchmark == ALL:
        table = ranking_table(ranking if ranking is not None else pd.DataFrame(columns=RANKING_COLUMNS))
        if sort == SORTS[0]:
            return table.reset_index(drop=True)  # the ranking's own order: leaderboard.md's
        by, ascending = {
            SORTS[1]: ("average (%)", True),
            SORTS[2]: ("model", True),
            SORTS[3]: ("model", False),
        }[sort]
        return table.sort_values(by, ascending=ascending, kind="stable").reset_index(drop=True)
    rows = results[results["benchmark"] == benchmark]
    table = pd.DataFrame(
        {
            "model": rows["model"],
            "benchmark": rows["benchmark"],
            "accuracy (%)": (100 * rows["mean"]).round(1),
            "± std": (100 * rows["std"]).round(1),
            "items": rows["items"],
            "samples": rows["samples"],
            "parsed (%)": (100 * rows["parse_rate"]).round(1),
            # Over each item's n samples: majority answer correct, at least one correct (older tables: blank).
            "maj@n (%)": (100 * rows.get("maj_at_n", pd.Series(float("nan"), index=rows.index))).round(1),
            "pass@n (%)": (100 * rows.get("pass_at_n", pd.Series(float("nan"), index=rows.index))).round(1),
            "rule": rows.apply(rule, axis=1),
            "leaderboard": rows["leaderboard"],
        }
    )
    by, ascending = {
        SORTS[0]: ("accuracy (%)", False),
        SORTS[1]: ("accuracy (%)", True),
        SORTS[2]: ("model", True),
        SORTS[3]: ("model", False),
    }[sort]
    return table.sort_values(by, ascending=ascending, kind="stable").reset_index(drop=True)


def details_table(details: pd.DataFrame, model: str, benchmark: str) -> pd.DataFrame:
    rows = details[details["model"] == model]
    if benchmark != ALL:
        rows = rows[rows["benchmark"] == benchmark]
    columns = (["benchmark"] if benchmark == ALL else []) + DETAIL_COLUMNS
    return rows[columns].reset_index(drop=True)


def build(sources: list[tuple[str, str]]) -> gr.Blocks:
    results, details, ranking = merge(sources)
    benchmarks = [ALL, *dict.fromkeys(results["benchmark"])]
    models = list(dict.fromkeys(results["model"]))
    with gr.Blocks(title="medssr-hub leaderboard") as app:
        gr.Markdown(
            "# medssr-hub leaderboard\n"
            f"{len(models)} models from {', '.join(f'`{label}`' for label, _ in sources)}. Accuracy is the "
            "mean ± std over samples (MedSSR protocol); `rule` says how answers were read. All benchmarks: "
            "each model's averages as its leaderboard computed them (over the non-rare benchmarks; the "
            "rare-disease column apart), in the leaderboard's order."
            + ("" if len(ranking) else " These leaderboards publish no ranking: pick a benchmark.")
        )
        with gr.Row():
            benchmark = gr.Dropdown(benchmarks, value=ALL, label="benchmark", elem_id="benchmark")
            sort = gr.Radio(list(SORTS), value=SORTS[0], label="sort by", elem_id="sort")
        table = gr.Dataframe(
            leaderboard_table(results, ALL, SORTS[0], ranking),
            interactive=False,
            wrap=True,
            elem_id="leaderboard",
        )
        gr.Markdown("## One model's answers, item by item")
        model = gr.Dropdown(models, value=models[0], label="model", elem_id="model")
        items = gr.Dataframe(
            details_table(details, models[0], ALL), interactive=False, wrap=True, elem_id="details"
        )
        for control in (benchmark, sort):
            control.change(lambda b, s: leaderboard_table(results, b, s, ranking), [benchmark, sort], table)
        for control in (model, benchmark):
            control.change(lambda m, b: details_table(details, m, b), [model, benchmark], items)
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("sources", nargs="*", help="folders or ORG/NAME@revision; none: leaderboards.json")
    parser.add_argument("--labels", nargs="*", help="a name per source in the table (default: the sources)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7860)
    args = parser.parse_args(argv)
    sources = args.sources or json.loads((HERE / "leaderboards.json").read_text())
    labels = args.labels or sources
    if len(labels) != len(sources):
        parser.error("give one label per source")
    build(list(zip(labels, sources, strict=True))).launch(
        server_name=args.host, server_port=args.port, css=CSS, theme=THEME
    )


if __name__ == "__main__":
    main()
