"""Synthesis's config (`SynthesisConfig`: validated when read, its resume fingerprint) and the draws that
split question slots between the two branches."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from medssr_hub.errors import ConfigError, ServiceError
from medssr_hub.field_help import arg, documented
from medssr_hub.generation import GenerationSettings
from medssr_hub.paths import benchmarks_dir
from medssr_hub.resume import resume_fingerprint

MAX_QUESTIONS = 10_000_000  # a run's plan and draws are held in memory
BRANCHES = ("rare", "seed")


class SynthesisError(ServiceError):
    pass


@documented
@dataclass
class SynthesisConfig(GenerationSettings):
    """`medssr-hub synthesize --config recipes/synthesis/config_demo.yaml [--field value ...]`."""

    # The shared generation settings (GenerationSettings) this stage describes or defaults its own way.
    model: str = arg(
        "the generator LLM: embedded (SmolLM2-135M-Instruct), a local folder, or a model repo id (looked up "
        "in the local hub first, then on the Hub)",
        "embedded",
    )
    seed: int = arg("the seed of the rho draws, the attempts' plans and their samples", 42)
    temperature: float = 0.8
    top_k: int = 50
    max_tokens: int = 320
    batch_size: int = 32

    num_questions: int = arg(
        "questions to synthesize (accepted ones; the released MedSSR set holds 43K after filtering)", 100
    )
    alpha: float = arg(
        "the rare-disease share: question slot i takes the knowledge-injected branch when its rho_i ~ U(0,1) "
        "is below alpha (0: seed branch only, 1: rare branch only; seed sets hold about 0.03)",
        0.3,
    )
    seed_data: str | None = arg(
        "the seed questions the generator models its questions on: a file, a folder or a dataset repo id; "
        "null: MedQA from the benchmarks folder",
        None,
    )
    seed_revision: str | None = arg("tag, branch or commit of a seed_data repo id; null: main", None)
    exemplars: int = arg("seed questions shown to the generator in each prompt", 1)
    rare_generator: str = arg(
        "what writes the rare branch's questions: llm (the generator, given the disease's knowledge) or "
        "vignette (built from the catalogue, no LLM, the key known by construction)",
        "llm",
    )
    seed_generator: str = arg(
        "what writes the seed branch's questions: llm, or vignette (for ablations and tests only)", "llm"
    )
    disease_sampling: str = arg(
        "how the rare branch picks its disease: uniform over the catalogue, or phenotypes (weighted by the "
        "number of annotated phenotypes, favouring well-described diseases)",
        "uniform",
    )
    passages: int = arg(
        "knowledge passages injected per rare-branch question: the disease's card plus the passages-1 "
        "BM25 neighbours of its name",
        3,
    )
    documents: list[str] = arg(
        "extra knowledge for retrieval: JSONL files, folders or dataset repo ids of title/text documents "
        "(chunked); empty: the disease cards only",
        default_factory=list,
    )
    catalog: list[str] = arg(
        "JSONL files of rare diseases that extend the HPO/ORPHANET catalogue; empty: the catalogue alone",
        default_factory=list,
    )
    chunk_size: int = arg(
        "attempts planned, generated and screened together, written as one shard (a kill loses one chunk)", 16
    )
    max_attempts_per_question: int = arg(
        "attempts a branch may spend per question it must fill; a branch that runs out stops the run with "
        "its acceptance rate and rejection reasons",
        12,
    )
    recover_answers: bool = arg(
        "ask the generator for the answer letter (one constrained token) when it wrote no answer line; "
        "false: such questions are rejected",
        True,
    )
    rewrite_vignettes: bool = arg(
        "the LLM rewrites vignette stems into prose (validated; the key is kept); false: catalogue stems",
        False,
    )
    constrain_layout: bool = arg(
        "embedded generator: enforce the stem / A.-E. options / 'Answer:' layout token by token; false: free text",
        True,
    )
    dedup_threshold: float = arg(
        "reject a question whose stem's word 3-shingles overlap an accepted one's (or its exemplar's) by "
        "this Jaccard similarity or more (1: exact duplicates only)",
        0.8,
    )
    decontaminate: list[str] | None = arg(
        "evaluation sets no synthesized question may share an n-gram with (files, folders or repo ids); "
        "null: every file in the benchmarks folder; []: none",
        None,
    )
    decontam_ngram: int = arg("the n of the decontamination n-grams, in words", 13)
    output_dir: str = "outputs/synthesis"
    publish_repo: str | None = None
    publish_version: str = "v0.1.0"

    def __post_init__(self) -> None:
        super().__post_init__()  # no `chat` setting: the generator always gets chat messages
        if not 1 <= self.num_questions <= MAX_QUESTIONS:
            raise ConfigError(
                f"num_questions must be between 1 and {MAX_QUESTIONS:,} (the released MedSSR set holds 43K), "
                f"got {self.num_questions:,}"
            )
        for name in ("chunk_size", "max_attempts_per_question"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 0 <= self.alpha <= 1:
            raise ConfigError(f"alpha must be in [0, 1], got {self.alpha}")
        for name in ("rare_generator", "seed_generator"):
            if getattr(self, name) not in ("llm", "vignette"):
                raise ConfigError(f"{name} must be 'llm' or 'vignette', got {getattr(self, name)!r}")

    def fingerprint(self) -> dict[str, Any]:
        """Everything that changes which attempts are made: a resumed run must match it."""
        skip = ("num_questions", "output_dir", "publish_repo", "publish_version", "hub", "batch_size", "vllm")
        weights = {"dtype": self.dtype} if self.dtype != "auto" else {}  # the default adds no key
        return resume_fingerprint(self, skip=(*skip, "dtype"), inputs=self.input_files()) | weights

    def input_files(self) -> list[str | None]:
        """The local files the run reads: seed questions (the seed branch only), catalogue, documents."""
        seeds = self.seed_data
        if seeds is None and self.alpha < 1 and (folder := benchmarks_dir()) is not None:
            seeds = str(folder / "medqa.json")
        return [seeds if self.alpha < 1 else None, *self.catalog, *self.documents]


def draw_rhos(n: int, seed: int) -> np.ndarray:
    """Stratified U(0,1) draws: one in each of n equal strata, in a seeded random order."""
    rng = np.random.default_rng(seed)
    return (rng.permutation(n) + rng.random(n)) / n
