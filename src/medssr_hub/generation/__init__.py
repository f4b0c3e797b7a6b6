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


def model_label(backend: str, model: str, endpoint: dict) -> str:
    """The model a stage generated with, for cards and columns: the embedded/local model, else the served
    model's name, else the server URL(s)."""
    if backend == "embedded":
        return model
    urls = endpoint.get("base_url")
    return str(endpoint.get("model") or (", ".join(urls) if isinstance(urls, list) else urls))


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
