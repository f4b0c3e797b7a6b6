"""The rewards: accuracy against the target letter, format (the registry of names is `reward_registry`).

The accuracy reward reads the answer letter through `medssr_hub.answers.Extraction`: by default the
evaluation's official rule (so the policy is rewarded for what evaluation will read), `extraction:
lenient` for the wider rule. TRL passes the dataset columns (`target`,
`letters`, `key`, `record`) and `log_metric`, through which the accuracy reward logs the diagnostics:
parse rate, recovery rate and, on synthetic questions with construction keys, the accuracy against the
key next to the reward (pseudo-label noise made visible).
"""

from __future__ import annotations

import copy
import json
import os
import re
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from medssr_hub.answers import Extraction, extract_or_recover
from medssr_hub.generation.embedded import EmbeddedBackend
from medssr_hub.records import record_from_row

OFFICIAL = Extraction("official")  # the evaluation's rule: what the rewards read by default
STRICT = re.compile(r"The answer is \(?([A-Z])\)?\.?\s*$")


def completion_text(completion: Any) -> str:
    """TRL hands chat completions as message lists and raw ones as strings."""
    if isinstance(completion, list):
        return "".join(m.get("content") or "" for m in completion if m.get("role") == "assistant")
    return str(completion)


class PolicyRecovery:
    """The constrained second pass with the policy being trained, by the reward's extraction rule (official:
    the evaluation's biased ids and length for the policy's family; lenient: 1 token, offered letters).

    Bound to the trainer after it is built; the policy is unwrapped from DDP/PEFT wrappers. Not for
    DeepSpeed ZeRO-3 (sharded parameters cannot generate outside the trainer's own gather).
    """

    def __init__(self, chat: bool, extraction: Extraction = OFFICIAL):
        self.chat = chat
        self.extraction = extraction
        self.trainer = None
        self._backend = None

    def bind(self, trainer) -> None:
        self.trainer = trainer

    def __call__(self, rows: Sequence[str], texts: Sequence[str]) -> list[str | None]:
        if self.trainer is None:
            raise RuntimeError("PolicyRecovery is not bound to a trainer")
        model = self.trainer.accelerator.unwrap_model(self.trainer.model)
        if self._backend is None or self._backend.model is not model:
            # A copy of the tokenizer: the backend pads on the left, TRL's own settings stay untouched.
            tokenizer = copy.deepcopy(self.trainer.processing_class)
            self._backend = EmbeddedBackend(model_and_tokenizer=(model, tokenizer))
        records = [record_from_row(json.loads(r)) for r in rows]
        was_training = model.training
        model.eval()
        try:
            extraction = replace(self.extraction, model_type=self._backend.model_type)
            answers = extract_or_recover(
                records, [[t] for t in texts], self._backend, chat=self.chat, extraction=extraction
            )
        finally:
            model.train(was_training)
        return [a[0].letter for a in answers]


# A folder: each training process appends the questions it scored at each step (`rank-<RANK>.jsonl`), to see
# how the data is sharded across processes (diagnostics; off when unset).
TRACE_ENV = "MEDSSR_TRACE_BATCHES"


def trace_batch(ids: Sequence[str] | None, trainer_state: Any = None) -> None:
    folder = os.environ.get(TRACE_ENV)
    if not folder or ids is None:
        return
    Path(folder).mkdir(parents=True, exist_ok=True)
    step = getattr(trainer_state, "global_step", None)
    with (Path(folder) / f"rank-{os.environ.get('RANK', '0')}.jsonl").open("a") as f:
        f.write(json.dumps({"step": step, "ids": sorted(set(ids))}) + "\n")


def read_letters(
    texts, letters, record, extraction: Extraction, recovery: PolicyRecovery | None
) -> tuple[list[str | None], list[bool], int]:
    """(the letters read, which came from the recovery pass, how many the first pass missed)."""
    preds = [extraction.first_pass(t, offered) for t, offered in zip(texts, letters, strict=True)]
    recovered = [False] * len(preds)
    pending = [i for i, p in enumerate(preds) if p is None]
    if recovery is not None and pending and record is not None:
        letters_back = recovery([record[i] for i in pending], [texts[i] for i in pending])
        for i, letter in zip(pending, letters_back, strict=True):
            preds[i], recovered[i] = letter, True
    return preds, recovered, len(pending)


class AccuracyReward:
    """1 when the extracted letter equals the target (pseudo-label, gold or construction key), else 0.

    Unparseable completions get 0, or, with recovery on, `recovered_credit` if the recovered letter is right.
    """

    __name__ = "accuracy"

    def __init__(
        self,
        recovery: PolicyRecovery | None = None,
        recovered_credit: float = 0.0,
        extraction: Extraction = OFFICIAL,
    ):
        self.recovery = recovery
        self.recovered_credit = recovered_credit
        self.extraction = extraction

    @property
    def recoveries(self) -> list[PolicyRecovery]:
        """The recovery passes to bind to the trainer once it is built."""
        return [self.recovery] if self.recovery is not None else []

    def read(self, texts, letters, record) -> tuple[list[str | None], list[bool], int]:
        return read_letters(texts, letters, record, self.extraction, self.recovery)

    def score(self, preds, recovered, target) -> list[float]:
        return [
            (self.recovered_credit if rec else 1.0) if pred is not None and pred == t else 0.0
            for pred, t, rec in zip(preds, target, recovered, strict=True)
        ]

    def __call__(
        self, prompts, completions, target, letters, key=None, record=None, log_metric=None, id=None, **kwargs
    ):
        trace_batch(id, kwargs.get("trainer_state"))
        texts = [completion_text(c) for c in completions]
        preds, recovered, missed = self.read(texts, letters, record)
        rewards = self.score(preds, recovered, target)
        if log_metric is not None:
            n = len(preds)
            log_metric("medssr/parse_rate", (n - missed) / n)
            log_metric("medssr/recovery_rate", sum(recovered) / n)
            keyed = [(p, k, t) for p, k, t in zip(preds, key or [""] * n, target, strict=True) if k]
            if keyed:
                log_metric("medssr/key_accuracy", sum(p == k for p, k, _ in keyed) / len(keyed))
                log_metric("medssr/label_is_key", sum(t == k for _, k, t in keyed) / len(keyed))
        return rewards


def format_reward(completions, letters, **_) -> list[float]:
    """1 when the completion ends with a strict "The answer is X" naming an offered letter."""
    out = []
    for c, offered in zip(completions, letters, strict=True):
        m = STRICT.search(completion_text(c).strip())
        out.append(1.0 if m and m.group(1) in offered else 0.0)
    return out


format_reward.__name__ = "format"
