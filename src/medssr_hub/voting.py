"""Majority voting, the TTRL way: the estimated label, its agreement ratio, and whether it was a tie.

One rule for both uses: offline pseudo-labels (`labeling`) and the online vote reward (`training.online_vote`).
Both read each vote by their config's `extraction` (default `answers.READING`, the evaluation's official rule).

Gold answers never enter a vote; they only measure it (label accuracy) where they exist.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Vote:
    label: str | None  # None when no sample gave a letter
    count: int  # votes for the label
    n: int  # all samples, unparsed ones included: they dilute agreement
    tie: bool  # another letter had as many votes; broken by first appearance

    @property
    def agreement(self) -> float:
        return self.count / self.n if self.n else 0.0


def majority_vote(letters: Sequence[str | None]) -> Vote:
    """Most frequent letter; ties go to the letter that appeared first (deterministic, order-stable)."""
    counts = Counter(letter for letter in letters if letter is not None)
    if not counts:
        return Vote(label=None, count=0, n=len(letters), tie=False)
    top = max(counts.values())
    tied = [letter for letter in dict.fromkeys(letters) if letter is not None and counts[letter] == top]
    return Vote(label=tied[0], count=top, n=len(letters), tie=len(tied) > 1)
