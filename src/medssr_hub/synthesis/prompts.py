"""Synthesis prompts (all of them live here) and the tolerant parser for what generators write back.

Small models cannot write JSON (SmolLM2-135M: 0 valid JSON questions in 8 samples) but sometimes write
the plain "Question: ... / A. ... / Answer: X" layout, so that is what we ask for and parse; JSON is
accepted too. The assistant turn is pre-filled with "Question:" so that the model starts in the layout.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from medssr_hub.generation.base import Prompt
from medssr_hub.records import MCQRecord
from medssr_hub.synthesis.knowledge import Passage

SYSTEM = "You are a medical educator who writes difficult, unambiguous multiple-choice exam questions."
# Described in words, not as a template: small models copy "<option>" placeholders verbatim.
LAYOUT = (
    "Use the same layout as the example: a line starting with 'Question:', then four or five options on "
    "their own lines starting with 'A.', 'B.', 'C.', 'D.' (and 'E.'), then a line 'Answer: ' followed by "
    "the letter of the single correct option."
)
ANSWER_PREFILL = "Question:"
# For engines that take a regex (vLLM's structured outputs, TGI), the same layout as a constraint, with the
# letters in order as in the GBNF grammar below (out-of-order letters are a rejection, not a layout).
_OPTION = r"[^\n]{1,200}\n"
LAYOUT_REGEX = (
    r"Question: [^\n]{20,1200}\n"
    + "".join(rf"{letter}\. {_OPTION}" for letter in "ABCD")
    + rf"(?:E\. {_OPTION})?Answer: [A-E]"
)
# The same layout as a GBNF grammar (llama.cpp servers), with the letters in order.
LAYOUT_GBNF = "\n".join(
    (
        r'root ::= "Question: " stem "A. " option "B. " option "C. " option "D. " option ("E. " option)? '
        r'"Answer: " [A-E]',
        r'stem ::= [^\n]{20,600} "\n"',
        r'option ::= [^\n]{1,200} "\n"',
    )
)


def _exemplar(record: MCQRecord) -> str:
    answer = f"\nAnswer: {record.answer}" if record.answer else ""
    return (
        f"Question: {record.question}\n" + "\n".join(f"{k}. {v}" for k, v in record.options.items()) + answer
    )


def seed_prompt(exemplars: Sequence[MCQRecord]) -> Prompt:
    shown = "\n\n".join(_exemplar(r) for r in exemplars)
    user = (
        f"Here are example questions:\n\n{shown}\n\n"
        "Write ONE new question of the same style and difficulty on a different medical topic. "
        "It must require reasoning, have exactly one correct option, and not copy the examples.\n" + LAYOUT
    )
    return _chat(user)


def knowledge_prompt(
    disease_name: str, passages: Sequence[Passage], exemplars: Sequence[MCQRecord]
) -> Prompt:
    knowledge = "\n".join(f"- {p.text}" for p in passages)
    shown = "\n\n".join(_exemplar(r) for r in exemplars)
    user = (
        f"Background knowledge about a rare disease, {disease_name}:\n{knowledge}\n\n"
        f"Example of the expected style:\n\n{shown}\n\n"
        f"Write ONE new question whose correct answer requires knowing about {disease_name} "
        "(its presentation, inheritance, genetics, diagnosis or management), using the background knowledge. "
        "Do not name the disease in the question if the question asks for the diagnosis.\n" + LAYOUT
    )
    return _chat(user)


def _chat(user: str) -> Prompt:
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": user},
        {"role": "assistant", "content": ANSWER_PREFILL},
    ]


OPTION = re.compile(r"^\s*\(?([A-Ea-e])[.):]\s+(.+?)\s*$")
ANSWER = re.compile(r"^\s*\**(?:correct\s+)?answer\**\s*(?:is)?\s*[:\-]?\s*\**\s*\(?([A-E])\b", re.I)


class ParseError(ValueError):
    """Why a generation is not a question; `reason` is the counted rejection reason."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def parse_generated(text: str, prefilled: bool = True) -> tuple[str, dict[str, str], str | None]:
    """(stem, options, answer letter or None) from a generation, or ParseError with the reason.

    A question without an answer line comes back with answer None: the caller may ask the generator
    for the letter in a constrained second pass (`key_prompt`) or reject it as "no_answer".

    `prefilled`: the text continues an assistant turn that already said "Question:".
    """
    text = (text or "").strip()
    if not text:
        raise ParseError("empty_generation")
    if text.lstrip().startswith("{"):
        return _parse_json(text)
    if prefilled and not re.match(r"(?i)\s*question\s*:", text):
        text = "Question: " + text
    lines = text.splitlines()
    stem_lines: list[str] = []
    options: dict[str, str] = {}
    answer = None
    for line in lines:
        if answer is None and (m := ANSWER.match(line)):
            answer = m.group(1).upper()
            break
        if m := OPTION.match(line):
            if not options and not any(stem_lines):
                raise ParseError("no_stem")
            letter = m.group(1).upper()
            if letter in options:
                raise ParseError("duplicate_letters")
            if letter != "ABCDE"[len(options)]:
                raise ParseError("options_out_of_order")
            options[letter] = m.group(2)
        elif not options:
            stem_lines.append(re.sub(r"(?i)^\s*question\s*:\s*", "", line).strip())
        elif line.strip():
            break  # prose after the options that is not an answer line
    stem = " ".join(s for s in stem_lines if s).strip()
    if not stem:
        raise ParseError("no_stem")
    if len(options) < 2:
        raise ParseError("no_options")
    return stem, options, answer


def key_prompt(prompt: Prompt, generation: str) -> Prompt:
    """The generator's own conversation, continued to "Answer:", for a one-letter constrained pass."""
    assert isinstance(prompt, list) and prompt[-1]["role"] == "assistant"
    continued = f"{prompt[-1]['content']} {generation.strip()}\nAnswer:"
    return [*prompt[:-1], {"role": "assistant", "content": continued}]


def _parse_json(text: str) -> tuple[str, dict[str, str], str]:
    try:
        data = json.loads(text[: text.rindex("}") + 1])
    except (ValueError, json.JSONDecodeError) as e:
        raise ParseError("invalid_json") from e
    if not isinstance(data, dict):
        raise ParseError("invalid_json")
    options = data.get("options")
    if isinstance(options, list):
        options = {"ABCDE"[i]: str(v) for i, v in enumerate(options[:5])}
    if not isinstance(options, dict) or not isinstance(data.get("question"), str) or not data.get("answer"):
        raise ParseError("json_missing_fields")
    return (
        data["question"].strip(),
        {str(k).upper(): str(v).strip() for k, v in options.items()},
        str(data["answer"]).upper()[:1],
    )


REWRITE_PREFILL = "Rewritten vignette:"


def rewrite_prompt(stem: str) -> Prompt:
    """Ask for the same case in fluent exam prose (the vignette's options and key are kept as they are)."""
    user = (
        "Rewrite this clinical vignette as fluent, natural exam prose in two or three sentences. Keep every "
        "finding, add no new findings, and do not name any disease.\n\n"
        f"Vignette: {stem}"
    )
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": user},
        {"role": "assistant", "content": REWRITE_PREFILL},
    ]
