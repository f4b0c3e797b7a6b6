"""Intervals for accuracies: scipy's bootstrap over questions (`scipy.stats.bootstrap`), paired for
differences.

Questions are the unit that is resampled (each question's accuracy is the mean over its samples), so
the interval reflects how many questions were asked, not how many samples were drawn. The percentile
method (BCa is undefined where every question scored alike, which 2-item CPU rehearsals often are); 2,000
resamples; seeded: the same scores give the same interval.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy.stats import bootstrap

REPS = 2000


def _interval(samples: Sequence[Sequence[float]], statistic: Callable, paired: bool, reps: int, seed: int):
    """The 95% percentile interval of `statistic` over the samples; a point where there is nothing to
    resample (one question)."""
    arrays = [np.asarray(s, dtype=float) for s in samples]
    if min(len(a) for a in arrays) < 2:
        point = float(statistic(*arrays, axis=-1))
        return point, point
    result = bootstrap(
        arrays,
        statistic,
        n_resamples=reps,
        confidence_level=0.95,
        method="percentile",
        paired=paired,
        vectorized=True,
        rng=np.random.default_rng(seed),
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def bootstrap_ci(values: Sequence[float], reps: int = REPS, seed: int = 0) -> tuple[float, float]:
    """The 95% interval of the mean of `values` (one per question)."""
    if not len(values):
        return (0.0, 0.0)
    return _interval([values], lambda x, axis: np.mean(x, axis=axis), False, reps, seed)


def stratified_bootstrap_ci(
    groups: Sequence[Sequence[float]], reps: int = REPS, seed: int = 0
) -> tuple[float, float]:
    """The 95% interval of the mean of the groups' means (e.g. an average over benchmarks), each group's
    questions resampled within it (scipy resamples each sample it is given on its own)."""
    groups = [g for g in groups if len(g)]
    if not groups:
        return (0.0, 0.0)

    def mean_of_means(*gs, axis):
        return np.mean([np.mean(g, axis=axis) for g in gs], axis=0)

    return _interval(groups, mean_of_means, False, reps, seed)


def paired_difference(
    before: Sequence[float], after: Sequence[float], reps: int = REPS, seed: int = 0
) -> tuple[float, float, float]:
    """(mean of after - before, 95% interval) over the same questions, resampled together (paired)."""
    if len(before) != len(after):
        raise ValueError(f"paired scores need the same questions: {len(before)} vs {len(after)}")
    if not len(before):
        return 0.0, 0.0, 0.0
    diff = float(np.mean(np.asarray(after, float) - np.asarray(before, float)))
    lo, hi = _interval([before, after], lambda a, b, axis: np.mean(b - a, axis=axis), True, reps, seed)
    return diff, lo, hi
