"""Answering multiple-choice questions the paper's way: CoT prompt, "The answer is X", recovery pass.

Labeling (majority vote), training rewards and evaluation all read letters through `extract_answer`,
so one rule decides what a model answered everywhere. The prompts follow the official MedSSR
evaluation (tdlhl/MedSSR, vllm_logitsbias_multi.py); the extraction is a superset of its rule: the
last "The answer is X" wins, with bold/boxed/bracketed variants, restricted to the offered letters.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from medssr_hub.generation.base import GenerationBackend, Prompt, SamplingParams
from medssr_hub.records import MCQRecord

SYSTEM_PROMPT = "Please think step by step and output the final answer as 'The answer is [LETTER]'."
BASE_TEMPLATE = (
    "You are a professional medical expert answering a multiple-choice medical question.\n"
    "Please think step by step and then provide exactly one final option.\n"
    "Format the final answer as: The answer is [LETTER].\n\n"
    "Question:\n{question}\n\n"
)
RECOVERY_INSTRUCTION = "Respond with one option only. The answer is "

_PREFIX = r"(?i:\b(?:the\s+)?(?:final\s+|correct\s+|best\s+)?answer\s*(?:is|:))"
_DECORATION = r"[\s:*_]*(?:\$?\\boxed\s*\{\s*|\\text\s*\{\s*|\[\s*|\(\s*|(?i:option|choice)\s+)?[\s*_]*"
_LETTER = r"([A-Z])(?![A-Za-z0-9])"
ANSWER_PATTERNS = (
    re.compile(_PREFIX + _DECORATION + _LETTER),
    re.compile(r"\\boxed\s*\{\s*(?:\\text\s*\{\s*)?" + _LETTER),
)


def extract_answer(text: str | None, letters: Sequence[str]) -> str | None:
    """The letter a free-text answer commits to, or None.

    Every "The answer is X" (also "Answer: X", "**B**", "$\\boxed{C}$", "[D]", "(A)", "option E") and
    every bare "\\boxed{X}" is a candidate; candidates whose letter is not offered are ignored; the
    last remaining one wins (models often revise themselves).
    """
    if not text:
        return None
    offered = set(letters)
    best: tuple[int, str] | None = None
    for pattern in ANSWER_PATTERNS:
        for m in pattern.finditer(text):
            if m.group(1) in offered and (best is None or m.start() > best[0]):
                best = (m.start(), m.group(1))
    return best[1] if best else None


def answer_prompt(record: MCQRecord, chat: bool = True) -> Prompt:
    """Chat models get the official system prompt; base models the raw CoT template (explicit choice)."""
    if chat:
        return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": record.format()}]
    return BASE_TEMPLATE.format(question=record.format())


def recovery_prompt(record: MCQRecord, generation: str, chat: bool = True) -> Prompt:
    """The second pass for an unparseable answer: the model's own reasoning, then "The answer is "."""
    return continue_with_recovery(answer_prompt(record, chat=chat), generation)


def continue_with_recovery(prompt: Prompt, generation: str) -> Prompt:
    """`prompt` (chat messages or raw text) + the generation + the recovery instruction."""
    generation = generation.strip()
    if not isinstance(prompt, str):
        return [
            *prompt,
            {"role": "assistant", "content": generation},
            {"role": "user", "content": RECOVERY_INSTRUCTION},
        ]
    suffix = "" if generation.endswith(".") else "."
    return f"{prompt}{generation}{suffix}\nRespond with one option only.\nThe answer is "


@dataclass(frozen=True)
class Answer:
    letter: str | None
    recovered: bool = False  # the letter came from the constrained second pass


def _first_offered(text: str, letters: Sequence[str]) -> str | None:
    m = re.match(r"[\s*(\[]*([A-Z])", text)
    return m.group(1) if m and m.group(1) in letters else None


def extract_or_recover(
    records: Sequence[MCQRecord],
    generations: Sequence[Sequence[str]],
    backend: GenerationBackend | None,
    chat: bool = True,
    max_tokens: int = 1,
    progress: bool = False,
) -> list[list[Answer]]:
    """Letters for each record's generations; unparseable ones go through one batched recovery pass.

    The recovery pass is greedy, `max_tokens` long (1-2, as the paper) and biased towards the record's
    own option letters. Without a backend, unparseable answers stay None.
    """
    answers: list[list[Answer]] = []
    pending: list[tuple[int, int]] = []
    for i, (record, texts) in enumerate(zip(records, generations, strict=True)):
        row = []
        for j, text in enumerate(texts):
            letter = extract_answer(text, record.letters)
            row.append(Answer(letter))
            if letter is None:
                pending.append((i, j))
        answers.append(row)
    if not pending or backend is None:
        return answers

    # One call per distinct letter set, since the allowed tokens differ (A-B for BioASQ, A-E for MedBullets).
    by_letters: dict[tuple[str, ...], list[tuple[int, int]]] = {}
    for i, j in pending:
        by_letters.setdefault(tuple(records[i].letters), []).append((i, j))
    for letters, items in by_letters.items():
        params = SamplingParams(n=1, temperature=0.0, max_tokens=max_tokens, allowed_tokens=letters)
        prompts = [recovery_prompt(records[i], generations[i][j], chat=chat) for i, j in items]
        completions = backend.generate(prompts, params, progress=progress)
        for (i, j), completion in zip(items, completions, strict=True):
            answers[i][j] = Answer(_first_offered(completion.samples[0].text, letters), recovered=True)
    return answers
