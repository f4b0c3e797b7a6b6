"""The one rule for `chat` (chat template or the raw chain-of-thought template), in every stage. Ground
layer."""

from __future__ import annotations

from medssr_hub.errors import ConfigError


def default_chat(chat: bool | None, model: str | None, backend: str = "embedded") -> bool | None:
    """`chat` as given; unset, the embedded default model's own setting. SmolLM2-135M-Instruct is an
    instruct model with a chat template, so `chat: true` is known for it (in this process or vLLM's); any
    other model, and whatever a server serves, still needs `chat` set (`require_chat`)."""
    if chat is None and model in (None, "", "embedded") and backend != "endpoint":  # modeling.EMBEDDED
        return True
    return chat


def require_chat(chat: bool | None, backend: str = "embedded", endpoint: dict | None = None) -> None:
    """The one rule for `chat`, in every stage: it is explicit, never guessed from the model; and a base
    model's raw template (`chat: false`) never goes through a server's chat template."""
    route = (endpoint or {}).get("route", "chat")
    if backend == "endpoint" and chat is False and route == "chat":
        raise ConfigError(
            "chat: false (a base model's raw chain-of-thought template) on endpoint route chat would be "
            "wrapped in the server's chat template: set endpoint.route to completions (vLLM, llama.cpp, "
            "SGLang: /v1/completions) or tgi (TGI's /generate)"
        )
    if chat is None:
        raise ConfigError(
            "set `chat: true` (chat template, instruct models) or `chat: false` (raw chain-of-thought "
            "template, base models); it is never guessed from the model name (the embedded default model "
            "and models medssr-hub trained carry their own)"
        )
