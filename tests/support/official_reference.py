"""A second implementation of the official script's answer rule, written from its description, against which
the product's `extract_official` is checked."""

from __future__ import annotations

import string

PREFIX = "The answer is "
UPPER = set(string.ascii_uppercase)


def _find(text: str, start: int, any_case: bool) -> int:
    """Where PREFIX next occurs at or after `start` (ASCII case folded when `any_case`), or -1."""
    for at in range(start, len(text) - len(PREFIX) + 1):
        window = text[at : at + len(PREFIX)]
        if window == PREFIX or (any_case and window.lower() == PREFIX.lower()):
            return at
    return -1


def _plain(rest):
    return (rest[0], 1) if rest[:1] in UPPER else None


def _boxed(rest):
    head = "$\\boxed{"
    if (
        rest.startswith(head)
        and rest[len(head) : len(head) + 1] in UPPER
        and rest[len(head) + 1 :].startswith("}$")
    ):
        return rest[len(head)], len(head) + 3
    return None


def _bracketed(rest):
    return (rest[1], 3) if rest[:1] == "[" and rest[1:2] in UPPER and rest[2:3] == "]" else None


def _bold(rest):
    return (rest[2], 5) if rest[:2] == "**" and rest[2:3] in UPPER and rest[3:5] == "**" else None


def _any_case(rest):
    return (rest[0].upper(), 1) if rest[:1] and rest[0] in string.ascii_letters else None


def _last(text: str, form, any_case: bool = False):
    """The letter of the last occurrence of PREFIX + form; occurrences never overlap (a match's text is
    consumed before the search goes on), like a left-to-right scan for the whole pattern."""
    found, start = None, 0
    while (at := _find(text, start, any_case)) >= 0:
        got = form(text[at + len(PREFIX) :])
        if got is None:
            start = at + 1
        else:
            found, start = got[0], at + len(PREFIX) + got[1]
    return found


def reference_official(text, model_name=""):
    """The official rule from its description: strip; "The answer is X", then "The answer is
    $\\boxed{X}$", then "The answer is [X]" (case-sensitive, X a capital letter); for Gemma models
    "The answer is **X**"; then "The answer is x" in any case, upper-cased. The first form found anywhere
    decides, by its last occurrence. Scored stripped of trailing periods, upper-cased; empty is no answer."""
    text = (text or "").strip()
    if not text:
        return None
    forms = [_plain, _boxed, _bracketed] + ([_bold] if "gemma" in model_name.lower() else [])
    for form in forms:
        if (letter := _last(text, form)) is not None:
            return letter
    return _last(text, _any_case, any_case=True)
