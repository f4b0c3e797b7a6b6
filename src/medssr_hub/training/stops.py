"""Rollouts that end where the answer ends: a base model's completion stops at the next "Question:".

The raw chain-of-thought template (`chat: false`) has no end-of-turn token. A base model that has answered
goes on to write its own "Question: ...", runs to `max_completion_length` (2-3x the rollout cost), and is
scored on whatever it answered last, its own invented question included. The stop rule ends a completion
at the first stop string, on either engine:

- vLLM (server or colocate) takes `stop` in its sampling parameters;
- transformers' `generate` takes `stop_strings`, but only with the tokenizer passed to it, which TRL's
  trainer does not do, so `MedSSRGRPOTrainer` hands it over.

Either engine leaves a stopped completion without an end-of-sequence token, and TRL reads a completion
without one as truncated (`completions/clipped_ratio`, and `mask_truncated_completions` would drop it
from the loss). So the trainer cuts each stopped completion right after its stop string and appends EOS:
a completion that stopped is a finished one.

The appended EOS was chosen by the rule, not sampled, so it has no sampling logprob. It must not get one:
TRL 1.16 corrects for vLLM's sampling with a per-sequence ratio `exp(sum(old_logp - sampling_logp))`
(`vllm_importance_sampling_mode: sequence_mask`, masked above a cap of 3.0 and never below), and a
sampling logprob of 0 for the EOS would add `log p(EOS | "...\nQuestion:")`, very negative under a base
model, to every stopped rollout's sum: its ratio goes to about 0 and its gradient with it. TRL reads a
missing logprob (`None`, as vLLM reports one it could not compute) as NaN and gives that token a
difference of 0 (`grpo_trainer.py`, `_generate_and_score_completions`): the ratio then reflects only the
tokens the engine sampled.

The rewards read a stopped completion as the answer ended, without the stop string it ran into
(`MedSSRGRPOTrainer._calculate_rewards`): "The answer is B.\nQuestion:" is "The answer is B.".
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from trl import GRPOTrainer

from medssr_hub.answers import answer_stops

logger = logging.getLogger(__name__)


def rollout_stops(script_args) -> tuple[str, ...]:
    """The stop strings of a run: the next question, for the base template only (`answers.answer_stops`:
    labeling votes stop at the same place)."""
    return answer_stops(script_args.chat, script_args.stop_at_next_question)


def add_stop_kwargs(training_args, stops: Sequence[str]) -> None:
    """Put the stops into TRL's `generation_kwargs` under the key the configured engine reads."""
    if not stops:
        return
    kwargs = dict(training_args.generation_kwargs or {})
    kwargs.setdefault("stop" if training_args.use_vllm else "stop_strings", list(stops))
    training_args.generation_kwargs = kwargs


def _stop_length(ids: list[int], stops: Sequence[str], tokenizer) -> int | None:
    """The fewest leading tokens whose text holds a stop string (None: no stop in `ids`). Decoding a prefix
    only grows its text, so the first prefix that holds a stop is found by bisection."""
    text = tokenizer.decode(ids, skip_special_tokens=True)
    if not any(s in text for s in stops):
        return None
    lo, hi = 1, len(ids)
    while lo < hi:
        mid = (lo + hi) // 2
        if any(s in tokenizer.decode(ids[:mid], skip_special_tokens=True) for s in stops):
            hi = mid
        else:
            lo = mid + 1
    return lo


def before_stop(text: str, stops: Sequence[str]) -> str:
    """The text up to the first stop string it holds (the text itself when it holds none)."""
    cut = min((i for i in (text.find(s) for s in stops) if i >= 0), default=len(text))
    return text[:cut]


def end_at_stop(
    completion_ids: list[list[int]],
    logprobs: list[list[float | None]] | None,
    stops: Sequence[str],
    tokenizer,
    eos_ids: Sequence[int],
) -> tuple[list[list[int]], list[list[float | None]] | None, int]:
    """Each completion that holds a stop string, cut after it and ended with the first of `eos_ids` (whose
    sampling logprob is None: not sampled); how many were.

    A completion already ending in EOS is finished and kept as it is. Trailing pad tokens (transformers pads
    a row that stopped early, which TRL keeps when pad is not EOS) are dropped first.
    """
    pad = tokenizer.pad_token_id
    out_ids, out_lp, stopped = [], ([] if logprobs is not None else None), 0
    for row, ids in enumerate(completion_ids):
        ids = list(ids)
        lps = list(logprobs[row]) if logprobs is not None else None
        while pad is not None and pad not in eos_ids and ids and ids[-1] == pad:
            ids.pop()
            if lps:
                lps.pop()
        cut = None if (ids and ids[-1] in eos_ids) else _stop_length(ids, stops, tokenizer)
        if cut is not None:
            ids, stopped = [*ids[:cut], eos_ids[0]], stopped + 1
            lps = [*lps[:cut], None] if lps is not None else None  # not sampled: no correction (above)
        out_ids.append(ids)
        if out_lp is not None:
            out_lp.append(lps)
    return out_ids, out_lp, stopped


class MedSSRGRPOTrainer(GRPOTrainer):
    """TRL's GRPOTrainer plus the stop rule (`stops`); with no stops it is GRPOTrainer unchanged.

    `_generate_single_turn` is TRL's private generation step (trl 1.16, pinned in constraints.txt): the one
    place both engines' completions pass before TRL masks and scores them.
    """

    def __init__(self, *args, stops: Sequence[str] = (), **kwargs):
        super().__init__(*args, **kwargs)
        self.stops = tuple(stops)
        self.stopped_completions = 0
        if self.stops and not self.use_vllm:
            model = self.accelerator.unwrap_model(self.model)
            original = model.generate
            tokenizer = self._tokenizer

            def generate(*a, **kw):  # transformers' stop strings need the tokenizer at generate()
                kw.setdefault("tokenizer", tokenizer)
                return original(*a, **kw)

            model.generate = generate

    def _generate_single_turn(self, *args, **kwargs):
        completion_ids, logprobs = super()._generate_single_turn(*args, **kwargs)
        if not self.stops:
            return completion_ids, logprobs
        completion_ids, logprobs, stopped = end_at_stop(
            completion_ids, logprobs, self.stops, self._tokenizer, list(self.eos_token_ids)
        )
        self.stopped_completions += stopped
        if completion_ids:
            mode = "train" if self.model.training else "eval"
            self._metrics[mode]["medssr/stopped_at_next_question"].append(stopped / len(completion_ids))
        return completion_ids, logprobs

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        """TRL's reward step, each reward reading a stopped completion without its stop string (raw
        completions are strings; the stops apply to the raw template only)."""
        if self.stops:
            completions = [before_stop(c, self.stops) if isinstance(c, str) else c for c in completions]
        return super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
