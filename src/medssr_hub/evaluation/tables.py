"""The leaderboard's tables from runs: one row per run (markdown, CSV), one per run and benchmark (the
published `results` config), and maj@k / pass@k by k."""

from __future__ import annotations

import csv
import io
import statistics
from typing import Any

from medssr_hub.answers import EXTRACTIONS
from medssr_hub.evaluation.registry import BENCHMARKS, title
from medssr_hub.evaluation.runs import Run
from medssr_hub.hub.cards import md_cell
from medssr_hub.published import publishable
from medssr_hub.schema import RANKING_FEATURES, RESULTS_FEATURES


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
        row["rule"] = "/".join(sorted({str(v.get("extraction")) for v in b.values()})) or None
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
        scored = [v for v in b.values() if not v.get("rare")]
        for m in AT_K:  # over the non-rare benchmarks, where every one of them reports it
            at_n = [_at_n(v, m) for v in scored]
            row[f"{m}_at_n"] = statistics.fmean(at_n) if at_n and None not in at_n else None
            curves = [_at_k(v, m) for v in scored]
            ks = min((len(c) for c in curves if c), default=0) if None not in curves else 0
            for k in range(1, ks + 1):
                row[f"{m}@{k}"] = statistics.fmean(c[k - 1] for c in curves)
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
            **{f"{m}_at_n": _at_n(b, m) for m in AT_K},
            **{f"{m}_at_k": _at_k(b, m) for m in AT_K},
        }
        for r in runs
        for name, b in r.benchmarks.items()
    ]


AT_K = ("maj", "pass")


def _at_k(bench: dict[str, Any], metric: str) -> list[float] | None:
    """maj@k or pass@k for k = 1..samples: from results.json's `<metric>@k`, or a published table's list."""
    by_k = bench.get(f"{metric}@k")
    if by_k:
        return [by_k[k] for k in sorted(by_k, key=int)]
    return bench.get(f"{metric}_at_k") or None


def _at_n(bench: dict[str, Any], metric: str) -> float | None:
    """maj@n or pass@n at n = the run's samples."""
    curve = _at_k(bench, metric)
    return curve[-1] if curve else bench.get(f"{metric}_at_n")


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


def model_cell(model: str) -> str:
    """A model's name as a table cell: user text, so one cell, no markup, no code-span break."""
    return "`" + md_cell(model).replace("`", "'") + "`"


def ranking_rows(runs: list[Run]) -> list[dict[str, Any]]:
    """The published `ranking` table (`schema.RANKING_FEATURES`): `table_rows`' order and averages."""
    return [
        {"rank": i, **{k: publishable(row.get(k)) for k in RANKING_FEATURES if k != "rank"}}
        for i, row in enumerate(table_rows(runs), start=1)
    ]


def other_rule(rule: str | None, by_rule: dict[str, Any]) -> str:
    """The score under the rule(s) a row was not read by ("lenient 41.7"; both where it mixed rules), from
    `by_rule`'s value for each rule; "–" where none was scored. The leaderboard and the method check."""
    others = [other for other in EXTRACTIONS if other != rule and by_rule.get(other) is not None]
    return " / ".join(f"{other} {_pct(by_rule[other])}" for other in others) or "–"


def render_markdown(runs: list[Run]) -> str:
    names = benchmark_order(runs)
    rows = table_rows(runs)
    head = ["model", *(md_cell(title(n)) for n in names), "average", "rare-disease", "other rule"]
    head += ["recovered", "maj@n", "pass@n", "from"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" + "---:|" * (len(head) - 2) + "---|"]
    for row in rows:
        cells = [model_cell(row["model"]), *(_pct(row[f"{n}_mean"], row[f"{n}_std"]) for n in names)]
        cells += [
            _pct(row["average"]),
            _pct(row["rare_disease"]),
            other_rule(row["rule"], {r: row[f"average_{r}"] for r in EXTRACTIONS}),
            _pct(row["recovery_rate"]),
        ]
        cells += [_pct(row["maj_at_n"]), _pct(row["pass_at_n"]), md_cell(row["from"])]
        lines.append("| " + " | ".join(cells) + " |")
    read = sorted(
        {
            b.get("protocol") or b.get("extraction") or "unrecorded"
            for r in runs
            for b in r.benchmarks.values()
        }
    )
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
        f"{' and '.join(rare)}; other rule: the average under the rule the row was not read by, on the same "
        "generations; "
        "recovered: share of answers from the constrained second pass. Answers read by: "
        f"{' / '.join(read)}{' (mixed: rows are not comparable)' if len(read) > 1 else ''}."
        + (f" Official recovery pass: {'; '.join(passes)}." if passes else "")
        + " maj@n / pass@n: over each question's n samples, the majority answer is gold / the unbiased "
        "estimate that at least one is (Chen et al. 2021); averaged like `average`.\n"
    )
    return "\n".join(lines) + "\n" + note + render_at_k(rows)


def render_at_k(rows: list[dict[str, Any]]) -> str:
    """maj@k and pass@k for every k the runs have, averaged over each run's non-rare benchmarks."""
    ks = sorted({int(c.split("@")[1]) for row in rows for c in row if c.startswith("maj@")})
    if not ks:
        return ""
    head = ["model", *(f"maj@{k}" for k in ks), *(f"pass@{k}" for k in ks)]
    lines = ["", "| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for row in rows:
        cells = [model_cell(row["model"])]
        cells += [_pct(row.get(f"{m}@{k}")) for m in AT_K for k in ks]
        lines.append("| " + " | ".join(cells) + " |")
    note = "\nmaj@k / pass@k (%) for k = 1 to the samples, average over the non-rare benchmarks.\n"
    return "\n".join(lines) + "\n" + note


def render_csv(runs: list[Run]) -> str:
    rows = table_rows(runs)
    buf = io.StringIO()
    # every row's columns (runs with fewer samples have fewer maj@k / pass@k), in first-seen order
    writer = csv.DictWriter(buf, fieldnames=list(dict.fromkeys(c for row in rows for c in row)))
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()
