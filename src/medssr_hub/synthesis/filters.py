"""What a synthetic question must pass: validation, deduplication, decontamination.

Each check returns a rejection reason (a short string that is counted and kept) or None.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass

from medssr_hub.decontamination import words
from medssr_hub.records import MCQRecord


@dataclass(frozen=True)
class ValidationSettings:
    min_options: int = 4
    max_options: int = 5
    min_stem_chars: int = 20
    max_stem_chars: int = 2000
    max_option_chars: int = 300


def validate_question(record: MCQRecord, settings: ValidationSettings = ValidationSettings()) -> str | None:
    """The checks that do not need the answer key (run before any answer-recovery pass is paid for)."""
    texts = [v.strip().lower().rstrip(".") for v in record.options.values()]
    if not settings.min_options <= len(texts) <= settings.max_options:
        return "wrong_option_count"
    if len(set(texts)) != len(texts):
        return "duplicate_options"
    if any(not t or len(t) > settings.max_option_chars for t in texts):
        return "bad_option_length"
    if not settings.min_stem_chars <= len(record.question) <= settings.max_stem_chars:
        return "bad_stem_length"
    return None


def validate_answer(record: MCQRecord) -> str | None:
    """The key is one of the options, and its text is not given away verbatim in the stem."""
    if record.answer not in record.options:
        return "answer_not_in_options"
    answer_words = words(record.options[record.answer])
    stem_words = words(record.question)
    n = len(answer_words)
    if n >= 2 and any(stem_words[i : i + n] == answer_words for i in range(len(stem_words) - n + 1)):
        return "answer_in_stem"
    return None


def validate(record: MCQRecord, settings: ValidationSettings = ValidationSettings()) -> str | None:
    return validate_question(record, settings) or validate_answer(record)


def _shingles(text: str, n: int = 3) -> set[int]:
    w = words(text)
    return {hash(" ".join(w[i : i + n])) for i in range(max(1, len(w) - n + 1))}


def similarity(a: str, b: str) -> float:
    """Jaccard similarity of word 3-shingles."""
    x, y = _shingles(a), _shingles(b)
    return len(x & y) / len(x | y) if x or y else 1.0


class Deduplicator:
    """Exact (normalized stem + options) and near duplicates (Jaccard of word 3-shingles of the stem)."""

    def __init__(self, threshold: float = 0.8):
        self.threshold = threshold
        self.exact: set[str] = set()
        self.shingles: list[set[int]] = []
        self.index: dict[int, list[int]] = defaultdict(list)

    def check_and_add(self, record: MCQRecord) -> str | None:
        key = hashlib.sha1(" ".join(words(record.format())).encode()).hexdigest()
        if key in self.exact:
            return "duplicate"
        own = _shingles(record.question)
        counts: dict[int, int] = defaultdict(int)
        for s in own:
            for other in self.index.get(s, ()):
                counts[other] += 1
        for other, shared in counts.items():
            if shared / (len(own) + len(self.shingles[other]) - shared) >= self.threshold:
                return "near_duplicate"
        self.exact.add(key)
        position = len(self.shingles)
        self.shingles.append(own)
        for s in own:
            self.index[s].append(position)
        return None


# A vignette rewrite keeps at least this share of the findings and adds at most this many new words.
REWRITE_MIN_KEPT = 0.8
REWRITE_MAX_NEW_WORDS = 4


def check_rewrite(original: MCQRecord, rewritten_stem: str, findings: list[str]) -> str | None:
    """Why a vignette rewrite cannot replace the original stem, or None when it can.

    Options and key never change (only the stem is swapped). The new stem must ask a question, keep a
    sane length, not loop, name no option the original did not (no leaked answer), keep most findings,
    and add little content of its own (small models invent findings).
    """
    stem = rewritten_stem.strip()
    if not stem.endswith("?"):
        return "rewrite_no_question"
    if not 0.5 * len(original.question) <= len(stem) <= 2 * len(original.question):
        return "rewrite_length"
    new = words(stem)
    trigrams = [" ".join(new[i : i + 3]) for i in range(len(new) - 2)]
    if trigrams and max(trigrams.count(t) for t in set(trigrams)) >= 3:
        return "rewrite_repetitive"
    new_text, old_words = f" {' '.join(new)} ", words(original.question)
    old_text = f" {' '.join(old_words)} "
    for text in original.options.values():
        option = " ".join(words(text))
        if option and f" {option} " in new_text and f" {option} " not in old_text:
            return "rewrite_names_an_option"
    if findings:
        kept = sum(all(w in new for w in words(f)) for f in findings)
        if kept / len(findings) < REWRITE_MIN_KEPT:
            return "rewrite_drops_findings"
    invented = {w for w in new if len(w) >= 4} - set(old_words)
    if len(invented) > REWRITE_MAX_NEW_WORDS:
        return "rewrite_adds_content"
    return None
