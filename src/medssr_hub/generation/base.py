"""The one interface every generation backend speaks.

Stages (synthesis, labeling, evaluation) only see `GenerationBackend.generate`: a list of prompts in,
one `Completion` with n `Sample`s per prompt out. Whether the tokens come from an in-process model or a
TGI / OpenAI-compatible server is a config choice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from medssr_hub.errors import InputError, ServiceError

ChatMessages = list[dict[str, str]]
# A raw prompt string (base models, TGI's native route) or chat messages (chat template applied by the
# backend). A chat whose last message is from the assistant is continued, not answered.
Prompt = str | ChatMessages


@dataclass(frozen=True)
class SamplingParams:
    """Sampling settings; the defaults are the paper's evaluation protocol (T=0.6, top_p=0.95, top_k=20)."""

    n: int = 1
    temperature: float = 0.6
    top_p: float = 0.95
    top_k: int = 20
    max_tokens: int = 512
    # Tokens generated before an end-of-sequence may end a sample (vLLM's `min_tokens`; transformers'
    # `min_new_tokens`); the official recovery pass sets 1.
    min_tokens: int = 0
    seed: int = 42
    stop: tuple[str, ...] = ()
    # Constrained answers: generation is biased towards the first token of each of these strings
    # (e.g. the offered option letters), as the paper's recovery pass does with vLLM's logit_bias.
    allowed_tokens: tuple[str, ...] | None = None
    allowed_bias: float = 100.0
    # Token ids biased by `allowed_bias` at every step (the official recovery pass's own ids; vLLM and
    # OpenAI-compatible servers take them as logit_bias).
    bias_ids: tuple[int, ...] | None = None
    # Constrained layout: a regex the whole output must match, where the backend supports grammars
    # (TGI's `grammar`); backends without grammar support ignore it and rely on prompting and parsing.
    regex: str | None = None
    # The same constraint as a GBNF grammar, for llama.cpp servers on the chat route (`grammar`).
    grammar: str | None = None
    # The multiple-choice layout (stem, lettered options, "Answer: X") enforced token by token, where the
    # backend can (embedded: LayoutLogitsProcessor); others rely on `regex`, prompting and parsing.
    layout: bool = False
    # How a chat prompt's rendered text meets the tokenizer's own special tokens. Off (ours): the chat
    # template's tokens only, as TRL tokenizes training prompts; one BOS where the template writes it. On:
    # as the official script, which renders the template to text and lets `LLM.generate(text)` tokenize
    # it with special tokens (tdlhl/MedSSR@e560f5a vllm_logitsbias_multi.py:146-150 and 285): a template
    # that begins with BOS (Llama-3's) then starts with two. Qwen's tokenizers add no BOS: the same ids.
    script_bos: bool = False

    def __post_init__(self):
        if self.n < 1:
            raise InputError(f"n must be >= 1, got {self.n}")
        if self.max_tokens < 1:
            raise InputError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if not 0 <= self.min_tokens <= self.max_tokens:
            raise InputError(f"min_tokens must be in [0, max_tokens], got {self.min_tokens}")
        if self.temperature < 0:
            raise InputError(f"temperature must be >= 0, got {self.temperature}")
        if self.top_k < 0:
            raise InputError(f"top_k must be 0 (off) or a count of tokens, got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise InputError(f"top_p must be in (0, 1], got {self.top_p}")

    @classmethod
    def of(cls, settings, **call) -> SamplingParams:
        """The one way a stage's config becomes sampling settings: its temperature, top_p, top_k,
        max_tokens and seed, with what the call adds (n, stops, constraints)."""
        fields = ("temperature", "top_p", "top_k", "max_tokens", "seed")
        return cls(**{**{name: getattr(settings, name) for name in fields}, **call})

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


@dataclass
class Sample:
    text: str
    finish_reason: str  # "stop" (end of sequence or a stop string) or "length"
    completion_tokens: int | None = None


@dataclass
class Completion:
    samples: list[Sample]
    prompt_tokens: int | None = None

    @property
    def texts(self) -> list[str]:
        return [s.text for s in self.samples]


# Called with (prompt index, completion) as soon as a prompt's samples are all done, so that callers can
# persist finished work before the rest of a batch (or a failing endpoint) returns.
OnComplete = Callable[[int, Completion], None]


class GenerationError(ServiceError):
    """A batch could not be finished.

    `partial` keeps every completion that did finish (by prompt index); `partial_samples` the finished
    samples of prompts that did not (prompt index -> sample index -> sample).
    """

    def __init__(self, message: str, partial: dict[int, Completion] | None = None):
        super().__init__(message)
        self.partial = partial or {}
        self.partial_samples: dict[int, dict[int, Sample]] = {}


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do beyond `generate`, declared on the backend (as lighteval's models declare
    `is_async`), so that stages ask instead of probing attributes.

    - `is_async`: an `async with backend.session()` / `agenerate` pair, for chained requests;
    - `loglikelihood`: `backend.loglikelihood(...)`, next-token scores of candidate continuations;
    - `token_bias`: `SamplingParams.bias_ids` / `allowed_tokens` reach the sampler (logit_bias);
    - `n_per_request`: n samples of a prompt in one request (else n requests, same seeds).
    """

    is_async: bool = False
    loglikelihood: bool = False
    token_bias: bool = True
    n_per_request: bool = True


@runtime_checkable
class GenerationBackend(Protocol):
    name: str
    capabilities: Capabilities

    def generate(
        self,
        prompts: Sequence[Prompt],
        params: SamplingParams,
        *,
        seeds: Sequence[int] | None = None,
        on_complete: OnComplete | None = None,
        progress: bool = True,
    ) -> list[Completion]: ...

    def identity(self) -> str:
        """What answers the requests (a loaded folder, a served model's name), part of every resumed
        item's identity. Not the id in cards: that is `modeling.model_id`."""
        ...

    def close(self) -> None:
        """Free what the backend holds (a vLLM engine, a model on a GPU) so the next model fits; the backend
        is unusable afterwards. Whoever built a backend closes it."""
        ...


def release_memory() -> None:
    """Hand freed tensors back: Python's cycles collected, then CUDA's cache emptied (on a GPU)."""
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def sample_seed(prompt_seed: int, sample_index: int) -> int:
    """A 63-bit seed for sample j of a prompt, independent of how prompts are batched.

    Every backend derives per-sample seeds this way, so a prompt's samples do not depend on which other
    prompts share its batch: an interrupted run that resumes with a different batch gets the same samples.
    """
    digest = hashlib.blake2b(f"{prompt_seed}:{sample_index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def prompt_seeds(params: SamplingParams, n_prompts: int, seeds: Sequence[int] | None) -> list[int]:
    if seeds is None:
        return [params.seed + i for i in range(n_prompts)]
    if len(seeds) != n_prompts:
        raise ValueError(f"got {len(seeds)} seeds for {n_prompts} prompts")
    return list(seeds)


def render_chat(tokenizer, messages: ChatMessages) -> str:
    """Chat messages as text through the tokenizer's chat template (a final assistant message is
    continued, not answered)."""
    continue_final = bool(messages) and messages[-1].get("role") == "assistant"
    return tokenizer.apply_chat_template(
        messages,
        tokenize=False,
        add_generation_prompt=not continue_final,
        continue_final_message=continue_final,
    )


def adds_bos(tokenizer) -> bool:
    """Whether the tokenizer puts BOS in front of text it encodes with special tokens (Llama's do; Qwen's
    and SmolLM2's do not)."""
    bos = getattr(tokenizer, "bos_token_id", None)
    ids = tokenizer("", add_special_tokens=True)["input_ids"]
    return bos is not None and bool(ids) and ids[0] == bos


def encode_prompt(tokenizer, prompt: Prompt, script_bos: bool = False) -> list[int]:
    """A prompt's token ids, as every backend feeds them: a raw string with the tokenizer's special
    tokens; chat messages through the chat template, with the tokenizer's special tokens only under
    `script_bos` (see `SamplingParams.script_bos`)."""
    if isinstance(prompt, str):
        return tokenizer(prompt, add_special_tokens=True)["input_ids"]
    return tokenizer(render_chat(tokenizer, prompt), add_special_tokens=script_bos)["input_ids"]


def server_text(tokenizer, prompt: Prompt, script_bos: bool = False) -> str:
    """The text to send a server that encodes it with special tokens (vLLM's, llama.cpp's and TGI's
    completion routes do) so that it gets `encode_prompt`'s ids: a template's leading BOS is left to the
    server where its tokenizer adds one, instead of being sent a second time."""
    if isinstance(prompt, str):
        return prompt
    text = render_chat(tokenizer, prompt)
    bos = getattr(tokenizer, "bos_token", None)
    if not script_bos and bos and text.startswith(bos) and adds_bos(tokenizer):
        return text[len(bos) :]
    return text


def first_token_ids(tokenizer, strings: Sequence[str]) -> list[int]:
    """First token id of each string, bare and after a space (how a letter follows "The answer is")."""
    ids: set[int] = set()
    for s in strings:
        for variant in (s, " " + s):
            toks = tokenizer(variant, add_special_tokens=False)["input_ids"]
            if toks:
                ids.add(int(toks[0]))
    return sorted(ids)


@dataclass
class BackendStats:
    """Counters a backend keeps across calls (reported by benches and stage logs)."""

    prompts: int = 0
    samples: int = 0
    completion_tokens: int = 0
    retries: int = 0

    def count(self, samples: Sequence[Sample]) -> None:
        """One prompt's finished samples and the tokens they report."""
        self.samples += len(samples)
        self.completion_tokens += sum(s.completion_tokens or 0 for s in samples)
