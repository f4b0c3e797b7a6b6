"""The id a generating stage's model goes by in cards and dataset columns: the model, never a server URL
nor a machine-local path (`modeling.model_id`)."""

from __future__ import annotations

from medssr_hub.modeling import model_id


def stage_model_id(backend: str, model: str, endpoint: dict, served: str | None = None) -> str:
    """`model_id` of the model a stage generated with: the embedded/local model; on an endpoint,
    `endpoint.model`, else the model the server said it serves (`served`), else the model
    `endpoint.tokenizer` names, else the stage's `model` when it names one. A server that serves a folder
    names the model by its path: cards get the folder's name."""
    if backend in ("embedded", "vllm"):
        return model_id(model)
    named = endpoint.get("model") or served or endpoint.get("tokenizer")
    if not named and model not in (None, "", "embedded"):
        named = model
    return model_id(named) if named else "an unnamed model (set endpoint.model)"
