"""The one place a stage's config becomes a generation backend (synthesis, labeling and evaluation alike).

The backend is the config's `backend:` field, never what happens to be installed: `vllm` without vLLM is
an error naming the install, not a silent fall-back to another engine.
"""

from __future__ import annotations

from typing import Any

from medssr_hub.chat import default_chat, require_chat
from medssr_hub.config import JsonDict
from medssr_hub.errors import ConfigError
from medssr_hub.generation.base import GenerationBackend
from medssr_hub.modeling import WEIGHT_DTYPES
from medssr_hub.resolve import published_chat

BACKENDS = ("embedded", "endpoint", "vllm")


DTYPES = ("auto", *WEIGHT_DTYPES)


def check_backend(kind: str, dtype: str | None = "auto") -> None:
    if kind not in BACKENDS:
        raise ConfigError(f"backend must be one of {', '.join(BACKENDS)}, got {kind!r}")
    if dtype not in DTYPES:
        raise ConfigError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")


def check_generation(cfg, chat: bool = True) -> None:
    """The checks every generating stage's config makes alike, in its `__post_init__`: its `endpoint:` and
    `vllm:` settings as dicts; `chat` by the one rule (unset: the embedded default's own, else how a model
    of ours says it was trained; `chat=False` for a stage that writes no chat prompts); positive sizes; a
    known backend and dtype."""
    cfg.endpoint, cfg.vllm = JsonDict(cfg.endpoint), JsonDict(cfg.vllm)
    if chat:
        cfg.chat = default_chat(cfg.chat, cfg.model, cfg.backend)
        if cfg.chat is None and cfg.backend != "endpoint":  # a model of ours says how it was trained
            cfg.chat = published_chat(cfg.model, cfg.model_revision, cfg.hub)
        require_chat(cfg.chat, cfg.backend, cfg.endpoint)
    for name in ("max_tokens", "batch_size"):
        if getattr(cfg, name) < 1:
            raise ConfigError(f"{name} must be at least 1, got {getattr(cfg, name)}")
    check_backend(cfg.backend, cfg.dtype)


def build_backend(
    kind: str,
    *,
    model: str | None = None,
    revision: str | None = None,
    hub: str | None = None,
    batch_size: int = 64,
    endpoint: dict[str, Any] | None = None,
    vllm: dict[str, Any] | None = None,
    torch_threads: int | None = None,
    dtype: str | None = "auto",
) -> GenerationBackend:
    """'embedded' (transformers in this process), 'vllm' (vLLM's offline engine in this process) or
    'endpoint' (a TGI / OpenAI-compatible server, configured by `endpoint`)."""
    check_backend(kind)
    # Imported on use: torch (embedded), vLLM and the async HTTP stack (endpoint) are heavy for the others.
    if kind == "endpoint":
        from medssr_hub.generation.endpoint import EndpointBackend

        return EndpointBackend(**(endpoint or {}))
    if kind == "vllm":
        from medssr_hub.generation.parallel_vllm import DataParallelVLLM, split_engines

        engines, options = split_engines(vllm)
        if engines > 1:  # one engine per GPU (`vllm: {engines: N}`)
            return DataParallelVLLM(
                engines, model=model, revision=revision, hub=hub, batch_size=batch_size, engine=options
            )
        from medssr_hub.generation.offline_vllm import VLLMBackend

        return VLLMBackend(model=model, revision=revision, hub=hub, batch_size=batch_size, engine=options)
    from medssr_hub.generation.embedded import EmbeddedBackend

    return EmbeddedBackend(
        model=model,
        revision=revision,
        hub=hub,
        batch_size=batch_size,
        torch_threads=torch_threads,
        dtype=dtype,
    )


def backend_for(cfg) -> GenerationBackend:
    """A stage config's backend, from the fields every generating stage has: `backend`, `model`,
    `model_revision`, `hub`, `batch_size`, `dtype`, `endpoint` and `vllm`."""
    return build_backend(
        cfg.backend,
        model=cfg.model,
        revision=cfg.model_revision,
        hub=cfg.hub,
        batch_size=cfg.batch_size,
        endpoint=cfg.endpoint,
        vllm=cfg.vllm,
        dtype=cfg.dtype,
    )


class BackendOwner:
    """A stage that builds its backend from its config (`self.cfg`) on first use and frees it with
    `close()`: the next stage's model needs the memory (vLLM on a GPU). A run that never generates (a
    vignette-only synthesis) never builds one; a backend handed in (`_backend` set) stays its owner's."""

    cfg: Any
    _backend: GenerationBackend | None = None
    _built_backend: bool = False  # whether close() frees it

    @property
    def backend(self) -> GenerationBackend:
        if self._backend is None:
            self._backend = backend_for(self.cfg)
            self._built_backend = True
        return self._backend

    def close(self) -> None:
        if self._built_backend:
            self._backend.close()
            self._backend, self._built_backend = None, False
