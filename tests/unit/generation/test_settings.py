"""The generation settings every generating stage shares, declared once, and the builder that turns them
into a backend, each backend built by its own module from its own options."""

import dataclasses
import importlib

import pytest

from medssr_hub.errors import ConfigError
from medssr_hub.evaluation.config import EvalConfig
from medssr_hub.generation import BACKENDS, AnswerSettings, GenerationSettings, backend_for, build_backend
from medssr_hub.generation.endpoint import EndpointBackend
from medssr_hub.labeling.label import LabelConfig
from medssr_hub.runs.settings import RunSettings
from medssr_hub.synthesis.config import SynthesisConfig

STAGES = (SynthesisConfig, LabelConfig, EvalConfig)


def test_each_stage_takes_the_shared_settings_and_declares_again_only_what_it_changes():
    shared = {f.name: f for f in dataclasses.fields(AnswerSettings)}
    for stage in STAGES:
        assert issubclass(stage, GenerationSettings)
        assert issubclass(stage, AnswerSettings) == (stage is not SynthesisConfig)  # synthesis has no chat
        for name in stage.__dict__["__annotations__"]:
            if name in shared:  # a field declared again must change its default or its help
                mine, base = stage.__dataclass_fields__[name], shared[name]
                assert (mine.default, mine.metadata["help"]) != (base.default, base.metadata["help"]), name
    assert "chat" not in {f.name for f in dataclasses.fields(SynthesisConfig)}
    assert SynthesisConfig().temperature == 0.8 and LabelConfig().temperature == 0.6
    assert EvalConfig().max_tokens == 2048 and LabelConfig().max_tokens == 512


def test_the_shared_checks_run_for_every_stage():
    for stage in STAGES:
        with pytest.raises(ConfigError, match="backend must be one of embedded, endpoint, vllm, got 'vlm'"):
            stage(backend="vlm")
        with pytest.raises(ConfigError, match="max_tokens must be at least 1, got 0"):
            stage(max_tokens=0)
        with pytest.raises(ConfigError, match="dtype must be one of"):
            stage(dtype="int3")
    for stage in (LabelConfig, EvalConfig):  # an endpoint's model is unknown: chat must be said
        with pytest.raises(ConfigError, match="chat"):
            stage(backend="endpoint", endpoint={"base_url": "http://127.0.0.1:9"})
    assert isinstance(SynthesisConfig(endpoint={"a": 1}).endpoint, dict)


def test_a_run_hands_its_shared_settings_to_a_stage_by_name():
    run = RunSettings(temperature=0.3, max_tokens=77, batch_size=5, seed=9)
    taken = AnswerSettings.taken_from(run)
    assert taken == {
        "model": "embedded", "backend": "embedded", "vllm": {}, "temperature": 0.3, "top_p": 0.95, "top_k": 20,
        "max_tokens": 77, "seed": 9, "batch_size": 5, "hub": None, "chat": True,
    }  # fmt: skip
    assert "chat" not in GenerationSettings.taken_from(run)
    assert EvalConfig(**taken).max_tokens == 77


def test_each_backend_is_built_by_its_own_module_from_its_own_options():
    for name, target in BACKENDS.items():
        module, function = target.split(":")
        assert module.startswith("medssr_hub.generation.") and callable(
            getattr(importlib.import_module(module), function)
        )
        if name != "embedded":  # its options are the settings field named after it
            assert name in GenerationSettings.__dataclass_fields__
    served = {"base_url": "http://127.0.0.1:9", "route": "completions", "model": "served-model"}
    cfg = LabelConfig(backend="endpoint", endpoint=served, chat=False, vllm={"engines": 2})
    backend = backend_for(cfg)  # the endpoint reads its own options, never `vllm:`
    try:
        assert isinstance(backend, EndpointBackend) and backend.model == "served-model"
    finally:
        backend.close()
    with pytest.raises(ConfigError, match="vllm.engines must be a whole number"):
        build_backend("vllm", options={"engines": 0})  # checked by the vLLM module before any engine starts
