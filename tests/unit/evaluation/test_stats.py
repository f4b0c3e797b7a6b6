"""Intervals through scipy.stats.bootstrap: over questions, seeded, paired for differences."""

import numpy as np
from scipy.stats import bootstrap

from medssr_hub.evaluation.stats import bootstrap_ci, paired_difference, stratified_bootstrap_ci


def test_the_interval_is_scipys_percentile_bootstrap_and_is_seeded():
    scores = [1, 0, 1, 1, 0, 1, 0, 0, 1, 1, 1, 0]
    ours = bootstrap_ci(scores)
    theirs = bootstrap(
        (np.asarray(scores, float),),
        np.mean,
        n_resamples=2000,
        method="percentile",
        rng=np.random.default_rng(0),
    ).confidence_interval
    assert ours == (float(theirs.low), float(theirs.high)) == bootstrap_ci(scores)
    assert ours[0] < np.mean(scores) < ours[1]
    assert bootstrap_ci([1, 1, 1]) == (1.0, 1.0) and bootstrap_ci([0.5]) == (0.5, 0.5)  # nothing to resample


def test_a_difference_on_the_same_questions_is_paired():
    """Two models that agree on most questions: pairing removes the questions' own difficulty, so the
    paired interval of the difference is much narrower than one from two independent resamples."""
    rng = np.random.default_rng(1)
    base = rng.integers(0, 2, 60).astype(float)
    after = base.copy()
    after[:6] = 1.0  # six questions gained
    diff, lo, hi = paired_difference(list(base), list(after))
    assert diff == float(np.mean(after - base)) and lo <= diff <= hi and lo >= 0
    unpaired = bootstrap((base, after), lambda a, b, axis: np.mean(b, axis=axis) - np.mean(a, axis=axis),
                         n_resamples=2000, method="percentile", rng=np.random.default_rng(0)).confidence_interval  # fmt: skip
    assert (hi - lo) < 0.6 * (unpaired.high - unpaired.low)
    assert paired_difference([1, 0], [1, 0]) == (0.0, 0.0, 0.0)


def test_an_average_over_benchmarks_resamples_each_within_itself():
    lo, hi = stratified_bootstrap_ci([[1, 1, 1, 1], [0, 1, 0, 1, 0, 1]])
    assert lo <= 0.75 <= hi and lo >= 0.5  # the first benchmark never varies: only the second's spread
