"""The name a generating model goes by in cards and dataset columns: the model, never a server URL."""

from __future__ import annotations

from pathlib import Path


def model_label(backend: str, model: str, endpoint: dict, served: str | None = None) -> str:
    """The model a stage generated with, for cards and columns, never a server URL: the embedded/local
    model; on an endpoint, `endpoint.model`, else the model the server said it serves (`served`), else the
    model `endpoint.tokenizer` names, else the stage's `model` when it names one."""
    if backend in ("embedded", "vllm"):
        named = model
    else:
        named = endpoint.get("model") or served or endpoint.get("tokenizer")
        if not named and model not in (None, "", "embedded"):
            named = model
    named = str(named or "an unnamed model (set endpoint.model)")
    # A server that serves a folder names the model by its path: cards get the folder's name, never the path.
    return Path(named).name if named.startswith(("/", "~")) else named
