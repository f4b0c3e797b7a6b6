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
    backend_options,
    build_backend,
    check_backend,
)
from medssr_hub.generation.model_names import stage_model_id
from medssr_hub.generation.settings import AnswerSettings, GenerationSettings

__all__ = [
    "AnswerSettings",
    "BACKENDS",
    "BackendOwner",
    "Completion",
    "GenerationBackend",
    "GenerationError",
    "GenerationSettings",
    "Prompt",
    "Sample",
    "SamplingParams",
    "backend_for",
    "backend_options",
    "build_backend",
    "check_backend",
    "stage_model_id",
    "sample_seed",
]
