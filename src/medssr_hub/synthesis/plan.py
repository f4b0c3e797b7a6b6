"""One synthesis attempt, from what it asks for to where it got: the unit the engine plans, generates,
screens and writes to its chunk's shard."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from medssr_hub.generation.base import Prompt
from medssr_hub.records import MCQRecord
from medssr_hub.synthesis.filters import validate_answer


@dataclass
class AttemptPlan:
    """Attempt `attempt` of `branch`. A vignette attempt carries its `record` from the start; an LLM attempt
    carries a `prompt` and gets its `raw` text and `record` from the generator. `reason` is set the moment
    the attempt is rejected (and a rejected record is kept only where a later check may still read it)."""

    attempt: int
    branch: str
    generator: str  # "vignette" or "llm:<model>"
    disease_id: str | None = None
    passage_ids: list[str] = field(default_factory=list)
    seed_ids: list[str] = field(default_factory=list)
    prompt: Prompt | None = None
    sample_seed: int | None = None
    raw: str | None = None
    record: MCQRecord | None = None
    reason: str | None = None

    @property
    def uses_llm(self) -> bool:
        return self.prompt is not None

    @property
    def needs_answer(self) -> bool:
        """A screened question written without its answer line: the answer pass asks for the letter."""
        return self.record is not None and self.reason is None and self.record.answer is None

    def reject(self, reason: str, *, drop_record: bool = False) -> None:
        self.reason = reason
        if drop_record:
            self.record = None

    def status(self) -> str:
        """ok, or the rejection reason; not_applicable for an attempt that never had a question."""
        if self.reason is not None:
            return self.reason
        if self.record is None:
            return "not_applicable"
        return validate_answer(self.record) or "ok"  # the key-free checks ran when it was screened

    def row(self) -> dict[str, Any]:
        """What the chunk's shard holds for this attempt."""
        return {
            "attempt": self.attempt,
            "branch": self.branch,
            "status": self.status(),
            "generator": self.generator,
            "disease_id": self.disease_id,
            "passage_ids": self.passage_ids,
            "seed_ids": self.seed_ids,
            "record": self.record.to_row() if self.record is not None else None,
            "raw": self.raw,
        }
