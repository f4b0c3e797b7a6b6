"""Generation backends behind one interface (`GenerationBackend.generate`)."""

from medssr_hub.generation.base import (
    Completion,
    GenerationBackend,
    GenerationError,
    Prompt,
    Sample,
    SamplingParams,
    sample_seed,
)


def model_label(backend: str, model: str, endpoint: dict, served: str | None = None) -> str:
    """The model a stage generated with, for cards and columns, never a server URL: the embedded/local
    model; on an endpoint, `endpoint.model`, else the model the server said it serves (`served`), else the
    model `endpoint.tokenizer` names, else the stage's `model` when it names one."""
    if backend == "embedded":
        return model
    named = endpoint.get("model") or served or endpoint.get("tokenizer")
    if not named and model not in (None, "", "embedded"):
        named = model
    return str(named or "an unnamed model (set endpoint.model)")


def get_backend(kind: str = "embedded", **kwargs) -> GenerationBackend:
    """Build a backend by name: 'embedded' (transformers in-process) or 'endpoint' (TGI/OpenAI server)."""
    # Imported on use: torch (embedded) and the async HTTP stack (endpoint) are heavy for the other.
    if kind == "embedded":
        from medssr_hub.generation.embedded import EmbeddedBackend

        return EmbeddedBackend(**kwargs)
    if kind == "endpoint":
        from medssr_hub.generation.endpoint import EndpointBackend

        return EndpointBackend(**kwargs)
    raise ValueError(f"unknown generation backend {kind!r}; choose 'embedded' or 'endpoint'")


__all__ = [
    "Completion",
    "GenerationBackend",
    "GenerationError",
    "Prompt",
    "Sample",
    "SamplingParams",
    "get_backend",
    "model_label",
    "sample_seed",
]
