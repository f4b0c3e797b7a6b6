"""Synthesis's config (`SynthesisConfig`: validated when read, its resume fingerprint) and the draws that
split question slots between the two branches."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medssr_hub.config import (
    ConfigError,
    JsonDict,
    resume_fingerprint,
)
from medssr_hub.errors import ServiceError
from medssr_hub.generation import check_backend, dtype_field
from medssr_hub.paths import benchmarks_dir

MAX_QUESTIONS = 10_000_000  # a run's plan and draws are held in memory
BRANCHES = ("rare", "seed")


class SynthesisError(ServiceError):
    pass


@dataclass
class SynthesisConfig:
    """`medssr-hub synthesize --config recipes/synthesis/config_demo.yaml [--field value ...]`."""

    num_questions: int = 100
    alpha: float = 0.3
    seed: int = 42
    seed_data: str | None = None  # seed questions: file, folder or dataset id; None: the benchmarks' MedQA
    seed_revision: str | None = None
    exemplars: int = 1
    rare_generator: str = "llm"  # llm | vignette
    seed_generator: str = "llm"  # llm | vignette (vignette here only for ablations and tests)
    backend: str = "embedded"  # embedded | vllm | endpoint
    model: str = "embedded"  # embedded | a folder | a model repo id (local hub first, then the Hub)
    model_revision: str | None = None
    endpoint: JsonDict = field(default_factory=JsonDict)  # EndpointBackend arguments (base_url, route, ...)
    vllm: JsonDict = field(
        default_factory=JsonDict
    )  # vllm.LLM arguments (dtype, gpu_memory_utilization, ...)
    disease_sampling: str = "uniform"  # uniform | phenotypes (weighted by annotated phenotypes)
    passages: int = 3
    documents: list[str] = field(default_factory=list)
    catalog: list[str] = field(default_factory=list)
    temperature: float = 0.8
    top_p: float = 0.95
    top_k: int = 50
    max_tokens: int = 320
    batch_size: int = 32
    dtype: str = dtype_field()
    chunk_size: int = 16
    max_attempts_per_question: int = 12
    recover_answers: bool = True  # ask the generator for the letter when it wrote no answer line
    rewrite_vignettes: bool = False  # the LLM rewrites vignette stems into prose (validated; key kept)
    constrain_layout: bool = True  # embedded generator: enforce stem / A.-E. / Answer: token by token
    dedup_threshold: float = 0.8
    decontaminate: list[str] | None = None  # eval sets; None: every file in the benchmarks folder
    decontam_ngram: int = 13
    output_dir: str = "outputs/synthesis"
    publish_repo: str | None = None
    publish_version: str = "v0.1.0"
    hub: str | None = None

    def __post_init__(self) -> None:
        self.endpoint, self.vllm = JsonDict(self.endpoint), JsonDict(self.vllm)
        if not 1 <= self.num_questions <= MAX_QUESTIONS:
            raise ConfigError(
                f"num_questions must be between 1 and {MAX_QUESTIONS:,} (MedSSR synthesized 43K), "
                f"got {self.num_questions:,}"
            )
        for name in ("chunk_size", "batch_size", "max_attempts_per_question", "max_tokens"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 0 <= self.alpha <= 1:
            raise ConfigError(f"alpha must be in [0, 1], got {self.alpha}")
        for name in ("rare_generator", "seed_generator"):
            if getattr(self, name) not in ("llm", "vignette"):
                raise ConfigError(f"{name} must be 'llm' or 'vignette', got {getattr(self, name)!r}")
        check_backend(self.backend, self.dtype)

    def fingerprint(self) -> dict[str, Any]:
        """Everything that changes which attempts are made: a resumed run must match it."""
        skip = ("num_questions", "output_dir", "publish_repo", "publish_version", "hub", "batch_size", "vllm")
        weights = {"dtype": self.dtype} if self.dtype != "auto" else {}  # auto: the fingerprint it always had
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
