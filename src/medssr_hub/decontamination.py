"""Decontamination: questions that share a word n-gram with an evaluation set. Synthesis rejects them;
training refuses a dataset holding them (`allow_eval_overlap`)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

from medssr_hub.records import MCQRecord

_WORDS = re.compile(r"[a-z0-9]+")


def words(text: str) -> list[str]:
    return _WORDS.findall(text.lower())


class Decontaminator:
    """Finds questions sharing any word n-gram (13 by default) with an evaluation set.

    Synthesis rejects such questions; training refuses a dataset holding them (`allow_eval_overlap`).
    """

    def __init__(self, eval_records: Iterable[MCQRecord], n: int = 13):
        self.n = n
        self.grams: set[str] = set()
        self.sources = 0
        for record in eval_records:
            self.sources += 1
            self.grams |= self._grams(record.format())

    def _grams(self, text: str) -> set[str]:
        w = words(text)
        return {
            hashlib.blake2b(" ".join(w[i : i + self.n]).encode(), digest_size=8).hexdigest()
            for i in range(len(w) - self.n + 1)
        }

    def check(self, record: MCQRecord) -> str | None:
        return "contaminated" if self._grams(record.format()) & self.grams else None
