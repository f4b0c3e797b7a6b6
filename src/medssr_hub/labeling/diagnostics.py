"""What a labeling run's votes say about its labels (TTRL-style): agreement, the band's counts, recovery,
and against reference answers (vignette keys, or gold) label, sample and reward accuracy and accuracy vs
the number of votes; the card's table and the plot. `cfg` is the run's `LabelConfig` (n, band,
reference, seed)."""

from __future__ import annotations

import random
import statistics
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medssr_hub.records import MCQRecord
from medssr_hub.voting import Vote, majority_vote


@dataclass(frozen=True)
class VotedQuestion:
    """One question as labeling left it: its record, its n answers, their majority, whether it was kept."""

    record: MCQRecord
    letters: list[str | None]  # each sample's letter (None: no answer read)
    recovered: list[bool]  # each sample's letter needed the recovery pass
    vote: Vote
    in_band: bool


# The band counts' keys in stats.json, and how the card shows them.
BAND_LABELS = {
    "below_band": "below band",
    "in_band": "in band",
    "above_band": "above band (e.g. unanimous)",
    "no_vote": "no parseable vote",
}


def reference_answer(record: MCQRecord, mode: str) -> str | None:
    """What measures a label: the construction key, or with `all` the dataset's answer (gold)."""
    if mode == "construction":
        return record.key
    return record.answer if mode == "all" else None


def compute_diagnostics(questions: list[VotedQuestion], cfg) -> dict[str, Any]:
    """TTRL-style metrics: label accuracy, per-sample and reward accuracy, agreement, recovery, accuracy vs n."""
    n = cfg.n
    agreements = [q.vote.agreement for q in questions]
    histogram = Counter(round(a * n) for a in agreements)
    low, high = cfg.band
    band_counts = {
        "below_band": sum(a < low for a in agreements),
        "in_band": sum(q.in_band for q in questions),
        "above_band": sum(a > high for a in agreements),
        "no_vote": sum(q.vote.label is None for q in questions),
    }
    samples = [x for q in questions for x in q.letters]
    recovered = [x for q in questions for x in q.recovered]
    out: dict[str, Any] = {
        "questions": len(questions),
        "n": n,
        "mean_agreement": statistics.fmean(agreements) if agreements else 0.0,
        "agreement_histogram": {f"{k}/{n}": histogram.get(k, 0) for k in range(n + 1)},
        "band_counts": band_counts,
        "ties": sum(q.vote.tie for q in questions),
        "recovery_rate": statistics.fmean(recovered) if recovered else 0.0,
        "unparsed_rate": statistics.fmean(x is None for x in samples) if samples else 0.0,
    }
    scored = [(q, ref) for q in questions if (ref := reference_answer(q.record, cfg.reference)) is not None]
    out["reference_questions"] = len(scored)
    if scored:
        out["label_accuracy"] = statistics.fmean(q.vote.label == ref for q, ref in scored)
        in_band = [(q, ref) for q, ref in scored if q.in_band]
        out["label_accuracy_in_band"] = (
            statistics.fmean(q.vote.label == ref for q, ref in in_band) if in_band else None
        )
        out["sample_accuracy"] = statistics.fmean(x == ref for q, ref in scored for x in q.letters)
        # Reward accuracy: how often the pseudo-label reward (sample == label) equals the true one (sample == ref).
        out["reward_accuracy"] = statistics.fmean(
            (x == q.vote.label) == (x == ref) for q, ref in scored for x in q.letters
        )
        out["label_accuracy_vs_n"] = accuracy_vs_n(scored, n, cfg.seed)
    return out


SUBSET_REPEATS = 20  # random vote subsets averaged per m in accuracy_vs_n


def accuracy_vs_n(scored: list[tuple[VotedQuestion, str]], n: int, seed: int) -> dict[str, float]:
    """Label accuracy when only m of the n votes are used (random subsets, averaged), m = 1, 2, 4, ..., n."""
    rng = random.Random(seed)
    sizes = sorted({m for m in (1, 2, 3, 4, 6, 8, 12, 16, 32, 64) if m < n} | {n})
    curve = {}
    for m in sizes:
        hits = []
        for question, ref in scored:
            for _ in range(SUBSET_REPEATS if m < n else 1):
                subset = rng.sample(question.letters, m)
                hits.append(majority_vote(subset).label == ref)
        curve[str(m)] = statistics.fmean(hits)
    return curve


def render_diagnostics(stats: dict[str, Any]) -> str:
    lines = ["| metric | value |", "|---|---:|"]
    for key in (
        "questions",
        "kept",
        "discarded",
        "mean_agreement",
        "ties",
        "recovery_rate",
        "unparsed_rate",
        "reference_questions",
        "label_accuracy",
        "label_accuracy_in_band",
        "sample_accuracy",
        "reward_accuracy",
    ):
        value = stats.get(key)
        if value is not None:
            lines.append(
                f"| {key.replace('_', ' ')} | {value:.3f} |"
                if isinstance(value, float)
                else f"| {key.replace('_', ' ')} | {value} |"
            )
    if stats.get("label_accuracy_vs_n"):
        lines += ["", "| votes used | label accuracy |", "|---:|---:|"]
        lines += [f"| {m} | {acc:.3f} |" for m, acc in stats["label_accuracy_vs_n"].items()]
    return "\n".join(lines)


def plot_diagnostics(diagnostics: dict[str, Any], path: Path, cfg) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    hist = diagnostics["agreement_histogram"]
    xs = list(range(len(hist)))
    low, high = cfg.band
    colors = ["tab:green" if low <= x / cfg.n <= high else "tab:gray" for x in xs]
    axes[0].bar(xs, list(hist.values()), color=colors)
    axes[0].set_xticks(xs, list(hist), rotation=0)
    axes[0].set_xlabel("majority votes / n (green: kept)")
    axes[0].set_ylabel("questions")
    axes[0].set_title("Agreement of the policy's votes")
    curve = diagnostics.get("label_accuracy_vs_n")
    if curve:
        axes[1].plot([int(m) for m in curve], list(curve.values()), marker="o")
        axes[1].set_ylim(0, 1)
        axes[1].set_xlabel("votes used (n)")
        axes[1].set_ylabel("label accuracy vs reference")
        axes[1].set_title(f"Label accuracy vs n ({diagnostics['reference_questions']} questions)")
    else:
        axes[1].axis("off")
        axes[1].text(0.5, 0.5, "no reference answers to score labels", ha="center", va="center")
    fig.tight_layout()
    partial = path.with_name(path.stem + ".part.png")
    fig.savefig(partial, dpi=110)
    plt.close(fig)
    partial.replace(path)
    return path
