"""Answering multiple-choice questions the paper's way: CoT prompt, "The answer is X", recovery pass.

The prompts follow the official MedSSR evaluation script (tdlhl/MedSSR, `vllm_logitsbias_multi.py`).
Two rules read the letter a generation commits to (`Extraction`):

- `official` (the evaluation default) is that script's rule, re-implemented from its description: its
  patterns in order, case-sensitive, then one case-insensitive retry; its recovery pass biases the union
  of the benchmark's gold letters (and "X." tokens for some model families) for 1 or 2 tokens. The script
  picks the family from the model's path string; by default (`recovery_rule: family`) we read it from the
  model's config, and keep the script's string rule as `recovery_rule: script_path_string`.
- `lenient` (`extract_answer`; any stage on request: `extraction: lenient`) also reads "The correct answer is D",
  "Answer: C", bold, boxed and bracketed forms, restricted to the question's own letters; its recovery
  pass biases those letters for one token.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

from medssr_hub.errors import InputError
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


# Where a base-template answer ends: a base model that has answered goes on to write a question of its own
# ("\nQuestion: ...") and answer it, and the last-answer rule would read that one. Training rollouts and
# labeling votes both stop there (`stop_at_next_question`, on by default); a chat template ends its turn.
NEXT_QUESTION = ("\nQuestion:",)


def answer_stops(chat: bool | None, stop_at_next_question: bool = True) -> tuple[str, ...]:
    """The stop strings of an answer: the next question, on the base template only."""
    return NEXT_QUESTION if stop_at_next_question and chat is False else ()


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


# -- the official rule -------------------------------------------------------------------------------------
# Tried in this order on the stripped text; the first pattern with any match decides, by its last match.
# Case-sensitive: "The answer is Bacteria" reads as B, exactly as the official script reads it.
OFFICIAL_PATTERNS = (
    re.compile(r"The answer is ([A-Z])"),
    re.compile(r"The answer is \$\\boxed\{([A-Z])\}\$"),
    re.compile(r"The answer is \[([A-Z])\]"),
)
OFFICIAL_BOLD = re.compile(r"The answer is \*\*([A-Z])\*\*")  # tried for Gemma models only
OFFICIAL_RETRY = re.compile(r"The answer is ([A-Z])", re.IGNORECASE)  # last resort; the letter upper-cased
# The script keys its family rules on the model's path string (`args.model`): "X." tokens are biased too
# when the lower-cased path names one of these, and one token is generated instead of two when the path
# names one of these (case-sensitive). `recovery_rule: script_path_string` keeps exactly that.
OFFICIAL_DOT_FAMILIES = ("gemma", "llama", "biomed", "huatuo", "deepseek-r1", "medreason")
OFFICIAL_ONE_TOKEN = ("Qwen3", "Qwen2", "m1")

# `recovery_rule: family` (the default) reads the family from the model itself (`model_type` in its
# config), whatever its repo or folder is called: Qwen2/Qwen3 get the script's Qwen rule (letter ids, one
# token), Llama/Gemma its Llama rule (letter and "X." ids, two tokens). Any other family gets one token on
# the letter ids: the script would give it two letter tokens ("AB"), scored wrong whatever the model meant.
QWEN_MODEL_TYPES = frozenset({"qwen2", "qwen2_moe", "qwen3", "qwen3_moe", "qwen3_next"})
LLAMA_MODEL_TYPES = frozenset({"llama", "llama4", "llama4_text", "mllama"})
GEMMA_MODEL_TYPES = frozenset({"gemma", "gemma2", "gemma3", "gemma3_text", "gemma3n", "gemma3n_text"})
RECOVERY_RULES = ("family", "script_path_string")


def model_family(model_type: str | None) -> str:
    """qwen | llama | gemma | other: the official script's family a model belongs to, by its model_type."""
    model_type = (model_type or "").lower()
    if model_type in QWEN_MODEL_TYPES:
        return "qwen"
    if model_type in LLAMA_MODEL_TYPES:
        return "llama"
    if model_type in GEMMA_MODEL_TYPES:
        return "gemma"
    return "other"


def extract_official(
    text: str | None, path_string: str | None = None, bold: bool | None = None
) -> str | None:
    """The letter the official MedSSR script reads from a generation, or None (then it recovers).

    Any capital letter counts, offered or not ("The answer is F" is read, and scored wrong). The bold
    form is tried for Gemma models: `bold`, else (as the script decides) "gemma" in `path_string`.
    """
    text = (text or "").strip()
    if not text:
        return None
    if bold is None:
        bold = "gemma" in (path_string or "").lower()
    for pattern in [*OFFICIAL_PATTERNS, *([OFFICIAL_BOLD] if bold else [])]:
        found = pattern.findall(text)
        if found:
            return found[-1]
    found = OFFICIAL_RETRY.findall(text)
    return found[-1].upper() if found else None


def official_pred(text: str | None) -> str | None:
    """A prediction as the official script scores it: stripped, trailing periods dropped, upper-cased."""
    pred = (text or "").strip().rstrip(".").upper()
    return pred or None


def first_letter(text: str | None) -> str | None:
    """The first capital letter of a recovery output, past spaces and punctuation: "C." and "CA" read C."""
    m = re.match(r"[\s.*(\[]*([A-Z])", text or "")
    return m.group(1) if m else None


@dataclass(frozen=True)
class Recovery:
    """The official recovery pass for one set of letters: what results, cards and leaderboards record."""

    rule: str  # family | script_path_string
    family: str  # qwen | llama | gemma | other (family rule); what the path string matched (script rule)
    ids: tuple[int, ...]  # token ids biased by +100 at every step
    max_tokens: int

    def as_dict(self) -> dict:
        return {
            "rule": self.rule,
            "family": self.family,
            "ids": list(self.ids),
            "max_tokens": self.max_tokens,
        }


def official_recovery(
    tokenizer,
    letters: Sequence[str],
    path_string: str = "",
    *,
    rule: str = "script_path_string",
    model_type: str | None = None,
) -> Recovery:
    """The official recovery pass's biased ids and token count, by `rule`.

    The ids are the first id of `tokenizer.encode(letter)` (special tokens included, as the script calls
    it: for tokenizers that prepend BOS, that is BOS) and, for the dot families, every id of
    `encode(letter + ".")`. `script_path_string` decides the family from `path_string` as the script does;
    `family` from `model_type` (see `model_family`).
    """
    if rule not in RECOVERY_RULES:
        raise InputError(f"recovery_rule must be one of {', '.join(RECOVERY_RULES)}, got {rule!r}")
    if rule == "family":
        family = model_family(model_type)
        dots = family in ("llama", "gemma")
        max_tokens = 2 if dots else 1
    else:
        dot_names = [f for f in OFFICIAL_DOT_FAMILIES if f in path_string.lower()]
        one_token_names = [name for name in OFFICIAL_ONE_TOKEN if name in path_string]
        family = "+".join(dot_names + one_token_names) or "none"
        dots, max_tokens = bool(dot_names), 1 if one_token_names else 2
    ids: set[int] = set()
    for letter in letters:
        ids.add(int(tokenizer.encode(letter)[0]))
        if dots:
            ids.update(int(t) for t in tokenizer.encode(f"{letter}."))
    return Recovery(rule, family, tuple(sorted(ids)), max_tokens)


EXTRACTIONS = ("official", "lenient")
# The rule every stage reads answers by unless its config says otherwise: the one the evaluation calls
# official. A pseudo-label's votes (labeling, the online vote), the reward that compares a rollout with it,
# and the score at the end then read a completion alike. `extraction:` in each config overrides it.
READING = "official"


@dataclass(frozen=True)
class Extraction:
    """How answers are read and recovered: `official` (the MedSSR script's rule) or `lenient` (ours).

    The official rule's model-family choices (Gemma's bold form; the recovery pass's ids and length) follow
    `recovery_rule`: `family` reads them from `model_type` (the model's config), `script_path_string`
    from `path_string` exactly as the script does.
    """

    mode: str = "lenient"
    path_string: str = ""
    recovery_rule: str = "family"
    model_type: str | None = None

    def __post_init__(self) -> None:
        if self.mode not in EXTRACTIONS:
            raise InputError(f"extraction must be one of {', '.join(EXTRACTIONS)}, got {self.mode!r}")
        if self.recovery_rule not in RECOVERY_RULES:
            raise InputError(
                f"recovery_rule must be one of {', '.join(RECOVERY_RULES)}, got {self.recovery_rule!r}"
            )

    @property
    def bold(self) -> bool:
        """Whether the official first pass reads Gemma's "The answer is **X**"."""
        if self.recovery_rule == "family":
            return model_family(self.model_type) == "gemma"
        return "gemma" in self.path_string.lower()

    def first_pass(self, text: str | None, letters: Sequence[str]) -> str | None:
        if self.mode == "official":
            return official_pred(extract_official(text, bold=self.bold))
        return extract_answer(text, letters)

    def read_recovered(self, text: str | None) -> str | None:
        """The prediction a recovery output gives. The script's rule scores the raw output (so two letter
        tokens, "DB", are one wrong prediction); the family rule reads its first letter, so it never
        predicts more than one letter (a lenient pass's single letter reads as itself)."""
        if self.mode == "official" and self.recovery_rule == "script_path_string":
            return official_pred(text)
        return first_letter(text)

    def recovery(self, tokenizer, letters: Sequence[str]) -> Recovery:
        return official_recovery(
            tokenizer, letters, self.path_string, rule=self.recovery_rule, model_type=self.model_type
        )

    @property
    def script_bos(self) -> bool:
        """Whether prompts are tokenized as the script tokenizes them (`SamplingParams.script_bos`): part
        of "official script, exactly"."""
        return self.mode == "official" and self.recovery_rule == "script_path_string"

    @property
    def protocol(self) -> str:
        """What a score was read by, in words, as results and leaderboards name it: the script's rule with
        its own recovery pass is "official script, exactly"; with ours by model family it is "official
        extraction, family recovery" (equal for models named as the authors named theirs); never one for
        the other."""
        if self.mode == "lenient":
            return "lenient extraction (ours)"
        if self.recovery_rule == "script_path_string":
            return "official script, exactly"
        return "official extraction, family recovery"

    def other(self) -> Extraction:
        """The same model's settings under the other rule (results show both)."""
        return replace(self, mode="lenient" if self.mode == "official" else "official")


def answer_prompt(record: MCQRecord, chat: bool = True) -> Prompt:
    """Chat models get the official system prompt; base models the raw CoT template (explicit choice)."""
    if chat:
        return [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": record.prompt_text()},
        ]
    return BASE_TEMPLATE.format(question=record.prompt_text())


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


def official_letters(records: Sequence[MCQRecord]) -> tuple[str, ...]:
    """The letters the official recovery pass biases: every gold letter of the benchmark file (here, of
    the items evaluated), as the script collects them. A question without gold (a synthetic one being
    voted on) adds its offered letters instead: ours, as the script only reads benchmarks with gold."""
    letters = {r.answer.upper() for r in records if r.answer}
    letters.update(letter for r in records if not r.answer for letter in r.letters)
    return tuple(sorted(letters))


def _first_offered(text: str, letters: Sequence[str]) -> str | None:
    m = re.match(r"[\s*(\[]*([A-Z])", text)
    return m.group(1) if m and m.group(1) in letters else None


def extract_or_recover(
    records: Sequence[MCQRecord],
    generations: Sequence[Sequence[str]],
    backend: GenerationBackend | None,
    chat: bool = True,
    extraction: Extraction = Extraction(),
    progress: bool = False,
    script_bos: bool = False,
) -> list[list[Answer]]:
    """Letters for each record's generations; unparseable ones go through one batched recovery pass.

    The recovery pass is greedy. Lenient: one token, biased towards the record's own option letters.
    Official: the tokens and length of `extraction.recovery` (by model family, or the script's path-string
    rule), the output read by `extraction.read_recovered`. Without a backend, unparseable answers stay None.
    """
    answers: list[list[Answer]] = []
    pending: list[tuple[int, int]] = []
    for i, (record, texts) in enumerate(zip(records, generations, strict=True)):
        row = []
        for j, text in enumerate(texts):
            letter = extraction.first_pass(text, record.letters)
            row.append(Answer(letter))
            if letter is None:
                pending.append((i, j))
        answers.append(row)
    if not pending or backend is None:
        return answers
    if extraction.mode == "official":
        tokenizer = getattr(backend, "tokenizer", None)
        if tokenizer is None:
            raise InputError("extraction official recovers with token ids: the backend needs a tokenizer")
        recovery = extraction.recovery(tokenizer, official_letters(records))
        # min_tokens=1, as the script's recovery pass (tdlhl/MedSSR@e560f5a vllm_logitsbias_multi.py:217).
        params = SamplingParams(
            n=1,
            temperature=0.0,
            max_tokens=recovery.max_tokens,
            min_tokens=1,
            bias_ids=recovery.ids,
            script_bos=script_bos,
        )
        prompts = [recovery_prompt(records[i], generations[i][j], chat=chat) for i, j in pending]
        completions = backend.generate(prompts, params, progress=progress)
        for (i, j), completion in zip(pending, completions, strict=True):
            answers[i][j] = Answer(extraction.read_recovered(completion.samples[0].text), recovered=True)
        return answers

    # One call per distinct letter set, since the allowed tokens differ (A-B for BioASQ, A-E for MedBullets).
    by_letters: dict[tuple[str, ...], list[tuple[int, int]]] = {}
    for i, j in pending:
        by_letters.setdefault(tuple(records[i].letters), []).append((i, j))
    for letters, items in by_letters.items():
        params = SamplingParams(
            n=1, temperature=0.0, max_tokens=1, allowed_tokens=letters, script_bos=script_bos
        )
        prompts = [recovery_prompt(records[i], generations[i][j], chat=chat) for i, j in items]
        completions = backend.generate(prompts, params, progress=progress)
        for (i, j), completion in zip(items, completions, strict=True):
            answers[i][j] = Answer(_first_offered(completion.samples[0].text, letters), recovered=True)
    return answers
