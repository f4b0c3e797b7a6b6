"""maj@k and pass@k over an item's samples, for k from 1 to the number of samples.

- pass@k: the chance that at least one of k samples drawn without replacement from the item's n is correct,
  by the unbiased estimator of Chen et al. (2021, "Evaluating Large Language Models Trained on Code"):
  1 - C(n - c, k) / C(n, k) for c correct samples, computed as a stable product.
- maj@k: whether the majority answer of the item's first k samples is the gold letter (unanswered samples
  do not vote; a tie goes to the answer that reached the tied count first, so the result is reproducible).
  TTRL and the self-consistency literature report it next to pass@k.

Both are averaged over items per k; mean@k is the per-sample accuracy the paper reports (mean over samples).
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Sequence


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one item with n samples of which c are correct (1 <= k <= n)."""
    if not 1 <= k <= n or not 0 <= c <= n:
        raise ValueError(f"need 1 <= k <= n and 0 <= c <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    miss = 1.0
    for i in range(n - c + 1, n + 1):  # C(n-c, k) / C(n, k) = prod_{i=n-c+1}^{n} (1 - k / i)
        miss *= 1.0 - k / i
    return 1.0 - miss


def majority(preds: Sequence[str | None]) -> str | None:
    """The most frequent answer among `preds` (None does not vote); ties go to the first to reach it."""
    counts: Counter = Counter()
    best, best_count = None, 0
    for pred in preds:
        if pred is None:
            continue
        counts[pred] += 1
        if counts[pred] > best_count:
            best, best_count = pred, counts[pred]
    return best


def item_at_k(preds: Sequence[str | None], gold: str | None) -> tuple[list[bool], list[float]]:
    """One item's maj@k (its first k samples' majority is gold) and pass@k, for k = 1..len(preds)."""
    n = len(preds)
    correct = sum(p is not None and p == gold for p in preds)
    maj = [(m := majority(preds[:k])) is not None and m == gold for k in range(1, n + 1)]
    return maj, [pass_at_k(n, correct, k) for k in range(1, n + 1)]


def sampling_metrics(preds: Sequence[Sequence[str | None]], golds: Sequence[str | None]) -> dict[str, dict]:
    """{"pass@k": {k: mean over items}, "maj@k": {k: mean over items}} for k = 1..samples."""
    if not preds:
        return {"pass@k": {}, "maj@k": {}}
    curves = [item_at_k(item, g) for item, g in zip(preds, golds, strict=True)]
    ks = range(1, len(preds[0]) + 1)
    return {
        "pass@k": {str(k): statistics.fmean(p[k - 1] for _, p in curves) for k in ks},
        "maj@k": {str(k): statistics.fmean(m[k - 1] for m, _ in curves) for k in ks},
    }
