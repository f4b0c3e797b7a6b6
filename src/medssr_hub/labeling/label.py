"""Pseudo-labels (MedSSR step 2): the policy answers each synthetic question n times; the majority wins.

Votes are sampled in fixed shards of questions, each written atomically, so an interrupted run resumes
without re-sampling and ends with the labels an uninterrupted run gives (samples are seeded per question
and sample, not per batch). An agreement band keeps the questions worth training on: unanimous ones give
GRPO groups with zero reward variance (no gradient), very low agreement is mostly noise.

Reference answers (vignette keys, or gold on real data) only measure the labels, never make them.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from medssr_hub.answers import (
    EXTRACTIONS,
    READING,
    RECOVERY_RULES,
    Extraction,
    answer_prompt,
    answer_stops,
    extract_or_recover,
)
from medssr_hub.errors import ConfigError, ServiceError
from medssr_hub.field_help import arg, documented
from medssr_hub.generation import (
    AnswerSettings,
    BackendOwner,
    GenerationError,
    SamplingParams,
)
from medssr_hub.hub import StageRelease
from medssr_hub.labeling.release import LabelingSummary, write_release
from medssr_hub.modeling import path_string
from medssr_hub.published import publishable
from medssr_hub.records import MCQRecord, load_records
from medssr_hub.resume import content_hash, guard_resume, resume_fingerprint
from medssr_hub.utils import atomic_write_jsonl, read_jsonl

logger = logging.getLogger(__name__)


class LabelingError(ServiceError):
    pass


@documented
@dataclass
class LabelConfig(AnswerSettings):
    """`medssr-hub label --config recipes/labeling/config_demo.yaml [--field value ...]`."""

    input: str = arg(
        "the questions to label (synthesis's output): its folder, a file, or a dataset repo id",
        "medssr-hub/demo-synthetic",
    )
    input_revision: str | None = arg("tag, branch or commit of an input repo id; null: main", None)
    split: str | None = arg("the split of input to label; null: test, else train, else the only split", None)
    model: str = arg(
        "the policy that votes: embedded (SmolLM2-135M-Instruct), a local folder, or a model repo id (looked "
        "up in the local hub first, then on the Hub)",
        "embedded",
    )
    n: int = arg("votes per question: the policy answers each question n times, the majority is its label", 8)
    stop_at_next_question: bool = arg(
        "base template (chat: false): a vote ends at the next '\\nQuestion:' it writes, where training "
        "rollouts end (the model's own next question is not voted on); chat: true ignores it",
        True,
    )
    extraction: str = arg(
        "how a vote's letter is read: official (the evaluation's rule, and what the accuracy reward reads by "
        "default, so a label and the rollout compared with it read alike) or lenient (more forms, offered "
        "letters only)",
        READING,
    )
    recovery_rule: str = arg(
        "official recovery pass for votes the first pass cannot read: family (ids and length by the model's "
        "model_type) or script_path_string (by the model's name, as the official script)",
        "family",
    )
    band: list[float] = arg(
        "[low, high]: keep a question when the share of votes agreeing with its label is in [low, high] "
        "(fractions of n; [0, 1] keeps every question with a label)",
        default_factory=lambda: [0.375, 0.875],
    )
    reference: str = arg(
        "which answers measure the labels' accuracy: construction (vignette keys only), all (also a "
        "question's own answer, e.g. gold) or none",
        "construction",
    )
    shard_size: int = arg("questions voted on and written together as one shard (a kill loses one shard)", 32)
    output_dir: str = "outputs/labels"
    trackio_project: str | None = None
    publish_repo: str | None = None
    publish_version: str = "v0.1.0"

    def __post_init__(self) -> None:
        super().__post_init__()
        self.band = [float(x) for x in self.band]
        if len(self.band) != 2 or not 0 <= self.band[0] <= self.band[1] <= 1:
            raise ConfigError(f"band must be [low, high] with 0 <= low <= high <= 1, got {self.band}")
        if self.extraction not in EXTRACTIONS:
            raise ConfigError(f"extraction must be one of {', '.join(EXTRACTIONS)}, got {self.extraction!r}")
        if self.recovery_rule not in RECOVERY_RULES:
            raise ConfigError(
                f"recovery_rule must be one of {', '.join(RECOVERY_RULES)}, got {self.recovery_rule!r}"
            )
        if self.reference not in ("construction", "all", "none"):
            raise ConfigError(f"reference must be construction, all or none, got {self.reference!r}")
        for name in ("n", "shard_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")

    def fingerprint(self) -> dict[str, Any]:
        keep = ("input", "input_revision", "split", "model", "model_revision", "backend", "chat", "n")
        keep = (
            *keep,
            "temperature",
            "top_p",
            "top_k",
            "max_tokens",
            "stop_at_next_question",
            "extraction",
            "recovery_rule",
            "seed",
            "shard_size",
        )
        return resume_fingerprint(self, keep=keep)


def question_seed(seed: int, question_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(f"{seed}:{question_id}".encode(), digest_size=6).digest(), "little")


class Labeler(BackendOwner):
    def __init__(self, cfg: LabelConfig):
        self.cfg = cfg
        self.out = Path(cfg.output_dir)
        self.shards = self.out / "shards"
        self.release = self.out / "dataset"

    def load(self) -> list[MCQRecord]:
        records, report = load_records(
            self.cfg.input, revision=self.cfg.input_revision, split=self.cfg.split, hub=self.cfg.hub
        )
        if report.rejected:
            logger.warning("Input rows rejected: %s", report.summary())
        if not records:  # as evaluate refuses an empty benchmark: an empty labeled set helps nobody
            raise ConfigError(
                f"input {publishable(str(self.cfg.input))}: no questions to label"
                + (f" ({report.summary()})" if report.rejected else "")
            )
        self.input_report = report
        return records

    def run(self) -> dict[str, Any]:
        cfg = self.cfg
        self.out.mkdir(parents=True, exist_ok=True)
        guard_resume(self.out, cfg.fingerprint(), "labeling", LabelingError)
        StageRelease.of(cfg).check()  # a conflicting version is found now, not after the work
        records = self.load()
        chunks = [records[i : i + cfg.shard_size] for i in range(0, len(records), cfg.shard_size)]
        votes: dict[str, dict[str, Any]] = {}
        bar = tqdm(total=len(records), desc="label", unit="question")
        for k, chunk in enumerate(chunks):
            shard = self.shards / f"votes-{k:05d}.jsonl"
            if not shard.exists():
                try:
                    atomic_write_jsonl(shard, self.vote(chunk))
                except GenerationError as e:
                    raise LabelingError(
                        f"the policy backend failed on shard {k} of {len(chunks)}: {e}. "
                        f"{k} finished shards are kept in {self.shards}; rerun to resume."
                    ) from e
            rows = read_jsonl(shard)
            if [(r["id"], r.get("sha")) for r in rows] != [(r.id, self.item_hash(r)) for r in chunk]:
                raise LabelingError(
                    f"{shard} holds votes for other questions or from another model (the input's content "
                    "or the served model changed since); use another output_dir, or delete it to start over"
                )
            votes.update({r["id"]: r for r in rows})
            bar.update(len(chunk))
        bar.close()
        return write_release(self, records, votes)

    def served_model(self) -> str | None:
        """The endpoint's model, as the server names it (None on the embedded backend)."""
        return self.backend.identity() if self.cfg.backend == "endpoint" else None

    def item_hash(self, record: MCQRecord) -> str:
        """A question's identity for resuming: its prompt and the model that votes on it."""
        return content_hash([answer_prompt(record, chat=self.cfg.chat), self.backend.identity()])

    def reading(self) -> Extraction:
        """How votes are read: the configured rule; the family rule reads the voting model's own config."""
        cfg = self.cfg
        if cfg.extraction == "official" and getattr(self.backend, "tokenizer", None) is None:
            raise ConfigError(
                "extraction official recovers unread votes with the model's token ids: set endpoint.tokenizer "
                "to the served model's tokenizer, or extraction: lenient"
            )
        model_type = self.backend.model_type if cfg.recovery_rule == "family" else None
        return Extraction(cfg.extraction, path_string(cfg.model), cfg.recovery_rule, model_type)

    def vote(self, chunk: list[MCQRecord]) -> list[dict[str, Any]]:
        """The policy's n answers to each question of a chunk: the rows one votes shard holds."""
        cfg = self.cfg
        reading = self.reading()  # before any generation: a setting it refuses costs nothing
        stop = answer_stops(cfg.chat, cfg.stop_at_next_question)  # where training rollouts stop
        params = SamplingParams.of(cfg, n=cfg.n, stop=stop)
        prompts = [answer_prompt(r, chat=cfg.chat) for r in chunk]
        seeds = [question_seed(cfg.seed, r.id) for r in chunk]
        completions = self.backend.generate(prompts, params, seeds=seeds, progress=False)
        texts = [c.texts for c in completions]
        answers = extract_or_recover(chunk, texts, self.backend, chat=cfg.chat, extraction=reading)
        return [
            {
                "id": record.id,
                "sha": self.item_hash(record),
                "letters": [a.letter for a in row],
                "recovered": [a.recovered for a in row],
                "finish": [s.finish_reason for s in completion.samples],
                "texts": [s.text for s in completion.samples],
            }
            for record, completion, row in zip(chunk, completions, answers, strict=True)
        ]


def run_labeling(cfg: LabelConfig) -> LabelingSummary:
    labeler = Labeler(cfg)
    try:
        return LabelingSummary(labeler.run())
    finally:
        labeler.close()
