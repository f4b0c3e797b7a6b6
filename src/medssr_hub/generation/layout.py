"""Constrained decoding of the multiple-choice layout for the embedded backend.

    <stem, one line>\\nA. <option>\\nB. <option>\\nC. <option>\\nD. <option>[\\nE. <option>]\\nAnswer: <letter>

A small state machine over each row's generated text decides which tokens may come next: free text in the
stem and inside options, the next option label at each line start (or "Answer:" once enough options
exist), one offered letter after "Answer:", then end of sequence. Small models then cannot drop the
options or the answer line; what they write inside the layout is still theirs, and still validated.

Why not a grammar library: none is installed with transformers here, and this layout needs a handful of
rules; the processor is a plain transformers LogitsProcessor.
"""

from __future__ import annotations

import torch
from transformers import LogitsProcessor

LETTERS = "ABCDE"
ANSWER = "Answer:"


class LayoutLogitsProcessor(LogitsProcessor):
    # A generated question has a stem of at least MIN_STEM_CHARS and 4 or 5 options.
    MIN_OPTIONS, MAX_OPTIONS, MIN_STEM_CHARS = 4, 5, 40

    def __init__(self, tokenizer, eos_ids: list[int]):
        self.tokenizer = tokenizer
        self.eos_ids = list(eos_ids)
        self.prompt_length = 0  # set per batch: generated text starts there
        tokens = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
        # The text each token adds when it follows other text (byte-level BPE spells a space as "Ġ").
        self.pieces = [tokenizer.convert_tokens_to_string([t]) if t is not None else "" for t in tokens]
        self.newline_ids = [i for i, p in enumerate(self.pieces) if "\n" in p]
        self._continuations: dict[str, list[int]] = {}
        self._letters: dict[int, list[int]] = {}

    def _continue(self, required: str) -> list[int]:
        """Tokens that type `required` (or a start of it), or all of it followed by more text on the line."""
        if required not in self._continuations:
            self._continuations[required] = [
                i
                for i, p in enumerate(self.pieces)
                if p and "\n" not in p and (required.startswith(p) or p.startswith(required))
            ]
        return self._continuations[required]

    def _letter_ids(self, n_options: int) -> list[int]:
        if n_options not in self._letters:
            offered = set(LETTERS[:n_options])
            self._letters[n_options] = [i for i, p in enumerate(self.pieces) if p.strip() in offered]
        return self._letters[n_options]

    def allowed(self, text: str) -> tuple[str, list[int] | None]:
        """(state, allowed token ids; None means free text: anything but the end of sequence)."""
        lines = text.split("\n")
        if len(lines) == 1:
            return "stem", None
        body, current = lines[1:-1], lines[-1]
        if any(line.startswith(ANSWER) for line in body):
            return "done", self.eos_ids
        n_options = sum(line[:3] in {f"{c}. " for c in LETTERS} for line in body)
        if current.startswith(ANSWER):
            return (
                ("done", self.eos_ids)
                if current[len(ANSWER) :].strip()
                else ("answer", self._letter_ids(n_options))
            )
        labels = ([f"{LETTERS[n_options]}. "] if n_options < self.MAX_OPTIONS else []) + (
            [ANSWER] if n_options >= self.MIN_OPTIONS else []
        )
        if any(current.startswith(label) for label in labels):
            return "option", None
        return "label", sorted(
            {
                i
                for label in labels
                if label.startswith(current)
                for i in self._continue(label[len(current) :])
            }
        )

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        for row in range(input_ids.shape[0]):
            text = self.tokenizer.decode(input_ids[row, self.prompt_length :], skip_special_tokens=True)
            state, ids = self.allowed(text)
            mask = torch.zeros_like(scores[row])
            if ids is None:
                mask[self.eos_ids] = float("-inf")  # no ending inside the stem or an option
                if state == "stem" and len(text.strip()) < self.MIN_STEM_CHARS:
                    mask[self.newline_ids] = float("-inf")
            else:
                mask.fill_(float("-inf"))
                mask[ids or self.eos_ids] = 0.0  # nothing fits: end rather than write garbage
            scores[row] = scores[row] + mask
        return scores
