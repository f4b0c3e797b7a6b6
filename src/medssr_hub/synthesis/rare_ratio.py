"""How much of an MCQ dataset is about rare diseases: catalogue names matched in question and options.

The paper reports about 3% for seed sets; synthesis with alpha makes the ratio of the synthetic set
tunable. A question counts as rare when a catalogue disease name (or a light variant of it: no
parenthetical, no possessive) appears as whole words in its stem or options. Single-word names shorter
than 8 letters are skipped: they collide with ordinary words.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from medssr_hub.records import MCQRecord
from medssr_hub.synthesis.catalog import RareDiseaseCatalog

_WORD = re.compile(r"[a-z0-9]+")


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower().replace("'s ", " "))


def name_variants(name: str) -> set[tuple[str, ...]]:
    variants = {name, re.sub(r"\s*\([^)]*\)", "", name)}
    out = set()
    for v in variants:
        words = tuple(_words(v))
        if len(words) > 1 or (len(words) == 1 and len(words[0]) >= 8):
            out.add(words)
    return out


class RareDiseaseMatcher:
    def __init__(self, catalog: RareDiseaseCatalog):
        self.by_first: dict[str, list[tuple[tuple[str, ...], str]]] = {}
        for disease in catalog:
            for words in name_variants(disease.name):
                self.by_first.setdefault(words[0], []).append((words, disease.id))
        for entries in self.by_first.values():
            entries.sort(key=lambda e: -len(e[0]))  # longest name first

    def find(self, text: str) -> list[str]:
        """Ids of catalogue diseases named in `text`."""
        words = _words(text)
        found = []
        for i, w in enumerate(words):
            for name, disease_id in self.by_first.get(w, ()):
                if tuple(words[i : i + len(name)]) == name:
                    found.append(disease_id)
                    break
        return list(dict.fromkeys(found))


@dataclass
class RareRatio:
    total: int
    rare: int
    examples: dict[str, list[str]] = field(default_factory=dict)  # question id -> disease ids

    @property
    def ratio(self) -> float:
        return self.rare / self.total if self.total else 0.0


KEEP_EXAMPLES = 5  # matched questions quoted in the report


def rare_ratio(records: Iterable[MCQRecord], matcher: RareDiseaseMatcher) -> RareRatio:
    total = rare = 0
    examples: dict[str, list[str]] = {}
    for record in records:
        total += 1
        hits = matcher.find(record.format())
        if hits:
            rare += 1
            if len(examples) < KEEP_EXAMPLES:
                examples[record.id] = hits
    return RareRatio(total, rare, examples)
