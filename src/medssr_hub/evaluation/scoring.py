"""Scoring generations: per-sample accuracy through the `medssr_accuracy` metric, per-item detail rows,
mean and std over samples, a bootstrap interval over questions, and maj@k / pass@k."""

from __future__ import annotations

import functools
import statistics

from medssr_hub.answers import Answer, Extraction
from medssr_hub.evaluation.sampling_metrics import item_at_k, sampling_metrics
from medssr_hub.evaluation.stats import bootstrap_ci
from medssr_hub.paths import package_data
from medssr_hub.records import MCQRecord


@functools.cache
def accuracy_metric(extraction: str):
    """The scorer as an `evaluate` metric (package data `metrics/medssr_accuracy`), loaded once per rule."""
    import evaluate  # imports datasets' module machinery: only when scoring

    return evaluate.load(str(package_data("metrics", "medssr_accuracy")), extraction)


def score(
    records: list[MCQRecord],
    answers: list[list[Answer]],
    texts: list[list[str]],
    extraction: Extraction | None,
) -> tuple[dict, list]:
    """Per-benchmark metrics and per-(item, sample) detail rows. Generative runs: each sample's accuracy is
    the `medssr_accuracy` metric's, from the generations and the recovery pass's answers; loglikelihood
    runs (`extraction` None) compare the chosen letters."""
    rows = []
    for record, row_answers, row_texts in zip(records, answers, texts, strict=True):
        maj, passed = item_at_k([a.letter for a in row_answers], record.answer)
        for j, (answer, text) in enumerate(zip(row_answers, row_texts, strict=True)):
            rows.append(
                {
                    "id": record.id,
                    "sample": j,
                    "gold": record.answer,
                    "generation": text,
                    "pred": answer.letter,
                    "recovered": answer.recovered,
                    "correct": answer.letter is not None and answer.letter == record.answer,
                    # the item's maj@k and pass@k at k = sample + 1 (their mean over items is the result's)
                    "maj_at_k": maj[j],
                    "pass_at_k": passed[j],
                }
            )
    k = len(answers[0]) if answers else 0
    if extraction is None:
        per_sample = [
            statistics.fmean(a[j].letter == r.answer for r, a in zip(records, answers, strict=True))
            for j in range(k)
        ]
    else:
        per_sample = [
            accuracy_metric(extraction.mode).compute(
                predictions=[t[j] for t in texts],
                references=[r.answer for r in records],
                recovered=[a[j].letter if a[j].recovered else None for a in answers],
                letters=["".join(r.letters) for r in records],
                path_string=extraction.path_string,
                model_type=extraction.model_type,
                recovery_rule=extraction.recovery_rule,
            )["accuracy"]
            for j in range(k)
        ]
    n = max(1, len(rows))
    per_item = [
        statistics.fmean(r["correct"] for r in rows[i * k : (i + 1) * k]) for i in range(len(records))
    ]
    metrics = {
        "items": len(records),
        "samples": k,
        "mean": statistics.fmean(per_sample) if per_sample else 0.0,
        "std": statistics.pstdev(per_sample) if len(per_sample) > 1 else 0.0,
        "per_sample": per_sample,
        # 95% bootstrap interval over questions (each question: its accuracy over the samples)
        "ci95": list(bootstrap_ci(per_item)) if k else [0.0, 0.0],
        "parse_rate": sum(not r["recovered"] and r["pred"] is not None for r in rows) / n,
        "recovery_rate": sum(r["recovered"] for r in rows) / n,
        # maj@k and pass@k for k = 1..samples, from each item's answers (after the recovery pass)
        **sampling_metrics([[a.letter for a in item] for item in answers], [r.answer for r in records]),
    }
    return metrics, rows
