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
from medssr_hub.generation.builder import (
    BACKENDS,
    BackendOwner,
    backend_for,
    build_backend,
    check_backend,
    check_generation,
)
from medssr_hub.generation.model_names import stage_model_id

__all__ = [
    "BACKENDS",
    "BackendOwner",
    "Completion",
    "GenerationBackend",
    "GenerationError",
    "Prompt",
    "Sample",
    "SamplingParams",
    "backend_for",
    "build_backend",
    "check_backend",
    "check_generation",
    "stage_model_id",
    "sample_seed",
]
