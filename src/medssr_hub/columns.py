"""How another dataset's columns become a question: `ColumnMap` (registry entries, training's
`dataset_columns`, `load_records(columns=...)`). Ground layer beside `records`: it maps raw rows to the
plain fields `records.normalize_row` reads, and never rejects; the loader counts what it cannot use."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from medssr_hub.errors import InputError


@dataclass(frozen=True)
class ColumnMap:
    """How a Hub MCQ dataset's columns become a record (registry entries, `load_records(columns=...)`).

    - question: its column; a list of chat messages (verl's `prompt`) gives its last user message;
    - options: a column holding a dict (letter -> text), a list of texts or a list of {letter, text}; a
      list of columns, one per option, lettered A, B, ... in order; or None: option lines inside the
      question ("A. ...") or `fixed_options` for every row;
    - answer: its column (None: no gold answer), read as a letter, a 0-based index, or the text of one of
      the options;
    - label: a column read as the pseudo-label letter (stage 1's target), when the dataset has one;
    - context: a column prepended to the stem (a string, a list of strings, or {"contexts": [...]}).
    Any column may be a dotted path into nested columns (`reward_model.ground_truth`).
    A row the map cannot read becomes a row `normalize_row` rejects with its reason, never an exception.
    """

    question: str = "question"
    options: str | tuple[str, ...] | None = "options"
    answer: str | None = "answer"
    answer_is: str = "letter"  # letter | index | text
    id: str | None = "id"
    context: str | None = None
    fixed_options: tuple[str, ...] | None = None
    label: str | None = None

    def __post_init__(self) -> None:
        if self.answer_is not in ("letter", "index", "text"):
            raise InputError(f"answer_is must be letter, index or text, got {self.answer_is!r}")

    @classmethod
    def from_dict(cls, fields: dict[str, Any]) -> ColumnMap:
        """From a config's mapping (lists become tuples); unknown keys are named."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(fields) - known)
        if unknown:
            raise InputError(f"unknown column mapping keys {unknown}; known: {sorted(known)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})

    def apply(self, row: Any) -> Any:
        if not isinstance(row, dict):
            return row
        if isinstance(self.options, tuple):
            options: Any = [_column(row, c) for c in self.options]
        elif self.options is not None:
            options = _column(row, self.options)
        else:
            options = list(self.fixed_options) if self.fixed_options else None
        if isinstance(options, list) and options and not isinstance(options[0], dict):
            options = {chr(ord("A") + i): text for i, text in enumerate(options)}
        if isinstance(options, dict):  # a struct column has every row's keys: a null field is no option
            options = {letter: text for letter, text in options.items() if text is not None}
        question = _last_user_message(_column(row, self.question))
        context = _context_text(_column(row, self.context)) if self.context else ""
        if context and isinstance(question, str):
            question = f"{context}\n{question}"
        mapped = {
            "id": _column(row, self.id) if self.id else None,
            "question": question,
            "options": options,
            "answer": self._letter(_column(row, self.answer), options) if self.answer else None,
        }
        if self.label:
            label = _column(row, self.label)
            mapped["label"] = str(label).strip().upper() if label not in (None, "") else None
        return mapped

    def _letter(self, value: Any, options: Any) -> Any:
        if value is None or self.answer_is == "letter":
            return value
        if self.answer_is == "index":
            index = value if isinstance(value, int) and not isinstance(value, bool) else -1
            return chr(ord("A") + index) if 0 <= index < 26 else f"index {value!r}"  # the latter is rejected
        if isinstance(options, dict):
            wanted = str(value).strip().lower()
            for letter, text in options.items():
                if str(text).strip().lower() == wanted:
                    return letter
        return f"text {value!r}"  # not an option: rejected as answer_not_in_options


def _column(row: dict[str, Any], path: str) -> Any:
    """A column, or a dotted path into nested ones (`reward_model.ground_truth`); None when absent."""
    if path in row:
        return row[path]
    value: Any = row
    for key in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _last_user_message(value: Any) -> Any:
    if isinstance(value, list) and value and all(isinstance(m, dict) for m in value):
        users = [m.get("content") for m in value if m.get("role") == "user"]
        return users[-1] if users else None
    return value


def _context_text(value: Any) -> str:
    if isinstance(value, dict):
        value = value.get("contexts", "")
    if isinstance(value, list):
        return "\n".join(str(v) for v in value)
    return str(value) if value else ""
