"""The settings every generating stage shares (synthesis, labeling, evaluation), declared once.

A stage's config inherits them, so its YAML and command-line keys stay flat (`model:`, `temperature:`), as
TrlParser reads inherited dataclass fields; a stage changes a default by declaring the field again (it
keeps its place). Their help text is `field_help.COMMON_HELP`'s, unless the stage gives its own.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from medssr_hub.chat import default_chat, require_chat
from medssr_hub.config import JsonDict
from medssr_hub.errors import ConfigError
from medssr_hub.field_help import documented
from medssr_hub.generation.base import SamplingParams
from medssr_hub.generation.builder import check_backend
from medssr_hub.resolve import published_chat


@documented
@dataclass
class GenerationSettings:
    """Which model generates, on which engine (and that engine's own options, `endpoint:` or `vllm:`), how
    it samples, and the hub its model is looked up in."""

    model: str = "embedded"
    model_revision: str | None = None
    backend: str = "embedded"
    endpoint: JsonDict = field(default_factory=JsonDict)
    vllm: JsonDict = field(default_factory=JsonDict)
    # Sampling defaults: SamplingParams's own (the paper's evaluation protocol), declared there once.
    temperature: float = SamplingParams.temperature
    top_p: float = SamplingParams.top_p
    top_k: int = SamplingParams.top_k
    max_tokens: int = SamplingParams.max_tokens
    seed: int = SamplingParams.seed
    batch_size: int = 64
    dtype: str = "auto"
    hub: str | None = None

    def __post_init__(self) -> None:
        self.endpoint, self.vllm = JsonDict(self.endpoint), JsonDict(self.vllm)
        for name in ("max_tokens", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        check_backend(self.backend, self.dtype)

    @classmethod
    def taken_from(cls, source: Any) -> dict[str, Any]:
        """The settings of this class that `source` (a run's settings, another stage's config) also has, by
        name: how a run hands what it shares to the stage configs it builds."""
        return {f.name: getattr(source, f.name) for f in dataclasses.fields(cls) if hasattr(source, f.name)}


@documented
@dataclass
class AnswerSettings(GenerationSettings):
    """A stage whose model answers questions (labeling's votes, evaluation): the shared settings and the
    prompt template its model is asked on (`chat`). Synthesis has no `chat`: its generator always gets chat
    messages."""

    chat: bool | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        self.chat = default_chat(self.chat, self.model, self.backend)
        if self.chat is None and self.backend != "endpoint":  # a model of ours says how it was trained
            self.chat = published_chat(self.model, self.model_revision, self.hub)
        require_chat(self.chat, self.backend, self.endpoint)
