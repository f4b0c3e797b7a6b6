"""The one place a stage's config becomes a generation backend (synthesis, labeling and evaluation alike).

The backend is the config's `backend:` field, never what happens to be installed: `vllm` without vLLM is
an error naming the install, not a silent fall-back to another engine.
"""

from __future__ import annotations

import importlib
from typing import Any

from medssr_hub.errors import ConfigError
from medssr_hub.generation.base import GenerationBackend
from medssr_hub.modeling import WEIGHT_DTYPES

# Each backend by the name a config gives it: "module:function", the function its own module defines to
# build it from the shared settings and its own options (`from_settings`). Imported on use: torch
# (embedded), vLLM and the async HTTP stack (endpoint) are heavy for the others. A backend's options are
# the settings field named after it (`vllm:`, `endpoint:`; GenerationSettings). A new backend: its module,
# a line here, its options field, and its test.
BACKENDS = {
    "embedded": "medssr_hub.generation.embedded:from_settings",  # transformers in this process
    "endpoint": "medssr_hub.generation.endpoint:from_settings",  # a TGI / OpenAI-compatible server
    "vllm": "medssr_hub.generation.parallel_vllm:from_settings",  # vLLM's offline engine(s) in this process
}
DTYPES = ("auto", *WEIGHT_DTYPES)


def check_backend(kind: str, dtype: str | None = "auto") -> None:
    if kind not in BACKENDS:
        raise ConfigError(f"backend must be one of {', '.join(BACKENDS)}, got {kind!r}")
    if dtype not in DTYPES:
        raise ConfigError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")


def build_backend(
    kind: str,
    *,
    model: str | None = None,
    revision: str | None = None,
    hub: str | None = None,
    batch_size: int = 64,
    dtype: str | None = "auto",
    options: dict[str, Any] | None = None,
    torch_threads: int | None = None,
) -> GenerationBackend:
    """The backend named `kind`, from the settings every backend is offered (each takes what it uses) and
    its own `options` (a config's `vllm:` or `endpoint:`)."""
    check_backend(kind)
    module, function = BACKENDS[kind].split(":")
    build = getattr(importlib.import_module(module), function)
    return build(
        model=model,
        revision=revision,
        hub=hub,
        batch_size=batch_size,
        dtype=dtype,
        options=dict(options or {}),
        torch_threads=torch_threads,
    )


def backend_options(cfg) -> dict[str, Any] | None:
    """A config's options for its own backend: its field named after the backend, if it has one."""
    return getattr(cfg, cfg.backend, None)


def backend_for(cfg) -> GenerationBackend:
    """A stage config's backend, from the settings every generating stage has (GenerationSettings)."""
    return build_backend(
        cfg.backend,
        model=cfg.model,
        revision=cfg.model_revision,
        hub=cfg.hub,
        batch_size=cfg.batch_size,
        dtype=cfg.dtype,
        options=backend_options(cfg),
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
