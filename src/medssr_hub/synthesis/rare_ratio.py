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


def _tokens(text: str) -> list[tuple[str, int, int]]:
    """Lower-cased words with their spans in `text`; a possessive "'s" is dropped ("Crohn's" = "Crohn")."""
    out = []
    lower = text.lower()
    for m in _WORD.finditer(lower):
        if m.group() == "s" and m.start() > 0 and lower[m.start() - 1] in "'’":
            continue
        out.append((m.group(), m.start(), m.end()))
    return out


def _words(text: str) -> list[str]:
    return [w for w, _, _ in _tokens(text)]


def name_variants(name: str) -> set[tuple[str, ...]]:
    variants = {name, re.sub(r"\s*\([^)]*\)", "", name)}
    out = set()
    for v in variants:
        words = tuple(_words(v))
        if len(words) > 1 or (len(words) == 1 and len(words[0]) >= 8):
            out.add(words)
    return out


class RareDiseaseMatcher:
    """Catalogue disease names and synonyms, matched as whole words (case and possessives ignored)."""

    def __init__(self, catalog: RareDiseaseCatalog):
        self.by_first: dict[str, list[tuple[tuple[str, ...], str]]] = {}
        for disease in catalog:
            for label in (disease.name, *disease.synonyms):
                for words in name_variants(label):
                    self.by_first.setdefault(words[0], []).append((words, disease.id))
        for entries in self.by_first.values():
            entries.sort(key=lambda e: -len(e[0]))  # longest name first

    def matches(self, text: str) -> list[tuple[str, str]]:
        """(disease id, the text that matched) for each catalogue disease named in `text`, in order."""
        tokens = _tokens(text)
        words = [w for w, _, _ in tokens]
        found: dict[str, str] = {}
        i = 0
        while i < len(words):
            step = 1
            for name, disease_id in self.by_first.get(words[i], ()):  # longest first
                if tuple(words[i : i + len(name)]) == name:
                    found.setdefault(disease_id, text[tokens[i][1] : tokens[i + len(name) - 1][2]])
                    step = len(name)  # a match's words are not matched again ("eosinophilic granulomatosis
                    break  # with polyangiitis" does not also name "granulomatosis with polyangiitis")
            i += step
        return list(found.items())

    def find(self, text: str) -> list[str]:
        """Ids of catalogue diseases named in `text`."""
        return [disease_id for disease_id, _ in self.matches(text)]


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
