"""Intervals for accuracies: a percentile bootstrap over questions, paired for differences.

Questions are the unit that is resampled (each question's accuracy is the mean over its samples), so
the interval reflects how many questions were asked, not how many samples were drawn. Seeded: the same
scores give the same interval.
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Sequence

REPS = 2000


def bootstrap_ci(values: Sequence[float], reps: int = REPS, seed: int = 0) -> tuple[float, float]:
    """The 95% percentile interval of the mean of `values`, resampled with replacement."""
    if not values:
        return (0.0, 0.0)
    rng = random.Random(seed)
    means = sorted(statistics.fmean(rng.choices(values, k=len(values))) for _ in range(reps))
    return means[int(0.025 * reps)], means[int(0.975 * reps) - 1]


def stratified_bootstrap_ci(
    groups: Sequence[Sequence[float]], reps: int = REPS, seed: int = 0
) -> tuple[float, float]:
    """The 95% percentile interval of the mean of the groups' means (e.g. an average over benchmarks),
    each group's questions resampled within it."""
    groups = [g for g in groups if g]
    if not groups:
        return (0.0, 0.0)
    rng = random.Random(seed)
    means = sorted(
        statistics.fmean(statistics.fmean(rng.choices(g, k=len(g))) for g in groups) for _ in range(reps)
    )
    return means[int(0.025 * reps)], means[int(0.975 * reps) - 1]


def paired_difference(
    before: Sequence[float], after: Sequence[float], reps: int = REPS, seed: int = 0
) -> tuple[float, float, float]:
    """(mean of after - before, 95% interval) over the same questions, resampled together."""
    if len(before) != len(after):
        raise ValueError(f"paired scores need the same questions: {len(before)} vs {len(after)}")
    diffs = [b - a for a, b in zip(before, after, strict=True)]
    lo, hi = bootstrap_ci(diffs, reps, seed)
    return (statistics.fmean(diffs) if diffs else 0.0), lo, hi
