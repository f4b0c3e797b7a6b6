"""The demo's method check (step 5a): does training move accuracy on questions whose answers are known?

Held-out keyed vignettes (synthesized apart, none of a disease any stage trained on, each answered by its
construction key) are answered by the base, stage 1 and stage 2 models; each model's accuracy gets a 95%
bootstrap interval over questions, and each trained model's difference from the base a paired one.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pandas as pd

from medssr_hub.config import config_from_dict
from medssr_hub.errors import InputError
from medssr_hub.evaluation.stats import paired_difference
from medssr_hub.evaluation.tables import other_rule
from medssr_hub.records import load_records
from medssr_hub.runs.settings import RunSettings
from medssr_hub.synthesis.config import SynthesisConfig
from medssr_hub.synthesis.synthesize import run_synthesis
from medssr_hub.utils import atomic_write_text

logger = logging.getLogger(__name__)

KEYED_FILE = "keyed_vignettes.jsonl"


def keyed_vignettes_file(cfg: RunSettings) -> str | None:
    """Step 5a's questions: vignettes synthesized apart (their own seed), none of a disease that stage 1 or
    stage 2 trained on, each answered by its construction key; written once into the output."""
    if not cfg.keyed_eval:
        return None
    out = Path(cfg.output_dir) / "keyed_eval"
    if not (out / KEYED_FILE).exists():
        (syn_cfg,) = config_from_dict(
            [SynthesisConfig],
            {**cfg.keyed_eval, "hub": cfg.hub, "model": cfg.model, "output_dir": str(out / "synthesis")},
        )
        run_synthesis(syn_cfg)
        trained = {
            r.columns.get("disease_id")
            for stage in ("synthesis", "heldout")
            if (Path(cfg.output_dir) / stage / "dataset").is_dir()
            for r in load_records(Path(cfg.output_dir) / stage / "dataset")[0]
        }
        candidates = load_records(out / "synthesis" / "dataset")[0]
        fresh = [r for r in candidates if r.key and r.columns.get("disease_id") not in trained]
        if len(fresh) < cfg.keyed_eval_size:
            raise InputError(
                f"keyed_eval: {len(fresh)} of {len(candidates)} vignettes are of diseases no stage trained on, "
                f"fewer than keyed_eval_size {cfg.keyed_eval_size}: raise keyed_eval.num_questions"
            )
        rows = [{**r.to_row(), "answer": r.key} for r in fresh[: cfg.keyed_eval_size]]
        atomic_write_text(out / KEYED_FILE, "".join(json.dumps(row) + "\n" for row in rows))
        logger.info(
            "Method check: %d held-out keyed vignettes (%d of %d dropped: a trained disease)",
            len(rows),
            len(candidates) - len(fresh),
            len(candidates),
        )
    return str(out / KEYED_FILE)


def method_check(keyed_runs: dict[str, tuple[str, dict, Path]]) -> dict[str, Any]:
    """Per model: accuracy on the held-out keyed vignettes (both rules, 95% interval over questions), and
    the paired difference against the base model, question by question."""
    if not keyed_runs:
        return {}
    per_item = {}
    for folder, (_, _, out) in keyed_runs.items():
        details = pd.read_parquet(out / "details" / f"{Path(KEYED_FILE).stem}.parquet")
        per_item[folder] = details.groupby("id", sort=True)["correct"].mean()
    check = {}
    for folder, (name, result, _) in keyed_runs.items():
        bench = next(iter(result["benchmarks"].values()))
        row = {
            "model": name,
            "items": bench["items"],
            "samples": bench["samples"],
            "accuracy": bench["mean"],
            "rule": bench.get("extraction"),  # the rule `accuracy` was read by
            "ci95": bench["ci95"],
            "official": bench.get("official_mean"),
            "lenient": bench.get("lenient_mean"),
            "recovery_rate": bench["recovery_rate"],
        }
        if folder != "base" and "base" in per_item:
            base, this = per_item["base"].align(per_item[folder], join="inner")
            diff, lo, hi = paired_difference(list(base), list(this))
            row["vs base"] = {"diff": diff, "ci95": [lo, hi], "significant": lo > 0 or hi < 0}
        check[folder] = row
    return check


def render_method_check(check: dict[str, Any]) -> list[str]:
    """The method check as a table: does training move accuracy on questions whose answers are known?"""
    if not check:
        return []
    first = next(iter(check.values()))
    lines = [
        f"Method check: {first['items']} held-out keyed vignettes (answers known by construction, diseases no "
        f"stage trained on) x {first['samples']} samples.",
        "",
        "| model | accuracy [95% CI] | other rule | recovered | vs base [95% CI] |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in check.values():
        lo, hi = row["ci95"]
        vs = row.get("vs base")
        versus = (
            f"{100 * vs['diff']:+.1f} [{100 * vs['ci95'][0]:+.1f}, {100 * vs['ci95'][1]:+.1f}]"
            + (" *" if vs["significant"] else "")
            if vs
            else "–"
        )
        lines.append(
            f"| {row['model']} | {100 * row['accuracy']:.1f} [{100 * lo:.1f}, {100 * hi:.1f}] | "
            f"{other_rule(row.get('rule'), row)} | {_pct(row['recovery_rate'])} | {versus} |"
        )
    rules = sorted({row.get("rule") or "unrecorded" for row in check.values()})
    lines += [
        "",
        f"Accuracy (%), answers read by the {' / '.join(rules)} rule; other rule: the same answers read by the "
        "other one. Intervals: bootstrap over questions, paired for the difference; * excludes 0.",
        "",
    ]
    return lines


def plot_method_check(check: dict[str, Any], path: Path) -> Path:
    """The method check as a picture: each model's accuracy with its 95% interval over questions (left), and
    each trained model's paired difference from the base with its interval (right), 0 marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(check.values())
    names = [r["model"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 0.5 * len(rows) + 2.2), sharey=True)
    ys = list(range(len(rows)))[::-1]
    acc = [100 * r["accuracy"] for r in rows]
    err = [[a - 100 * r["ci95"][0] for a, r in zip(acc, rows, strict=True)],
           [100 * r["ci95"][1] - a for a, r in zip(acc, rows, strict=True)]]  # fmt: skip
    left.errorbar(acc, ys, xerr=err, fmt="o", capsize=3)
    for a, y in zip(acc, ys, strict=True):
        left.annotate(f"{a:.1f}", (a, y), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8)
    left.set_xlim(-3, 103)  # 0 and 100 drawn whole
    left.set_yticks(ys, names)
    left.set_xlabel("accuracy (%)")
    left.set_title(f"{rows[0]['items']} held-out keyed vignettes x {rows[0]['samples']} samples", fontsize=9)
    left.grid(axis="x", alpha=0.3)
    right.axvline(0, color="grey", linewidth=1)
    for r, y in zip(rows, ys, strict=True):
        vs = r.get("vs base")
        if vs:
            d = 100 * vs["diff"]
            right.errorbar([d], [y], xerr=[[d - 100 * vs["ci95"][0]], [100 * vs["ci95"][1] - d]], fmt="s",
                           capsize=3, color="tab:red" if vs["significant"] else "tab:blue")  # fmt: skip
            right.annotate(
                f"{d:+.1f}", (d, y), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8
            )
    right.set_xlabel("difference from base (points; paired, 95%)")
    right.set_title("red: the interval excludes 0", fontsize=9)
    right.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"
