"""Evaluation's config (`EvalConfig`): the protocol's settings, validated when read, and its resume
fingerprint. The run loop is `evaluate.py`, scoring `scoring.py`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medssr_hub.answers import EXTRACTIONS, READING, RECOVERY_RULES, Extraction
from medssr_hub.config import JsonDict
from medssr_hub.errors import ConfigError
from medssr_hub.evaluation.lighteval_tasks import LIGHTEVAL_VLLM_UNSUPPORTED
from medssr_hub.field_help import arg, documented
from medssr_hub.generation import AnswerSettings
from medssr_hub.modeling import EMBEDDED, is_local_path, model_id, path_string
from medssr_hub.resume import resume_fingerprint


@documented
@dataclass
class EvalConfig(AnswerSettings):
    """`medssr-hub evaluate --config recipes/evaluation/config_demo.yaml [--field value ...]`."""

    model: str = arg(
        "the model evaluated: embedded (SmolLM2-135M-Instruct), a local folder, or a model repo id (looked up "
        "in the local hub first, then on the Hub)",
        "embedded",
    )
    max_tokens: int = 2048
    display_name: str | None = arg(  # None only on an endpoint until the server names its model
        "the model's name in tables and leaderboards; null: model@model_revision (a local folder by its "
        "name, never its path)",
        None,
    )
    benchmarks: list[str] = arg(
        "what to evaluate: all (the paper's ten), benchmark names (medqa, medmcqa, ...), or paths of other "
        "MCQ files in the MedSSR format (each named after its file)",
        default_factory=lambda: ["all"],
    )
    benchmark_paths: JsonDict = arg(
        "where a named benchmark is read from, over the defaults: {name: file, folder or ORG/NAME@revision}; "
        "{}: $MEDSSR_BENCHMARKS_DIR, then ../shared/benchmarks, then the Hub or the shipped samples",
        default_factory=JsonDict,
    )
    max_items: int | None = arg("the first max_items items of each benchmark; null: all of them", None)
    num_samples: int = arg("samples per item; accuracy is reported as their mean and std (the paper: 4)", 4)
    mode: str = arg(
        "generative (chain of thought, then 'The answer is X': the paper's protocol) or loglikelihood (the "
        "letter the model scores highest, no generation)",
        "generative",
    )
    engine: str = arg(
        "medssr (our generation backends) or lighteval (lighteval's Pipeline generates, on the embedded backend)",
        "medssr",
    )
    recovery: bool = arg(
        "the constrained second pass for answers the first pass could not read (the paper's logit-biased pass)",
        True,
    )
    extraction: str = arg(
        "how answers are read: official (the MedSSR evaluation script's first-pass rule; its recovery pass as "
        "recovery_rule says) or lenient (ours: more forms on the first pass, the question's own letters on the "
        "second); a change rescores the saved generations, nothing is generated again",
        READING,
    )
    recovery_rule: str = arg(
        "how the official recovery pass picks the model family (biased ids, 1 or 2 tokens): family (from the "
        "model's config, model_type) or script_path_string (from the model's name, as the official script "
        "does); both rules are always reported",
        "family",
    )
    output_dir: str = "outputs/eval"
    trackio_project: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        self.benchmark_paths = JsonDict(self.benchmark_paths)
        if isinstance(self.benchmarks, str):
            self.benchmarks = [self.benchmarks]
        if not self.display_name and self.backend == "endpoint":
            # What answers is what the server serves, not the `model` default: endpoint.model or the
            # tokenizer's model here, else the server's own name, asked at run time (Evaluator.run).
            named = self.endpoint.get("model") or self.endpoint.get("tokenizer")
            if named:
                self.display_name = model_id(str(named))
            elif self.model not in (None, "", EMBEDDED):
                shown = model_id(self.model)
                self.display_name = f"{shown}@{self.model_revision}" if self.model_revision else shown
        elif not self.display_name:
            model = str(self.model or EMBEDDED)
            shown = Path(model).name if is_local_path(model) else model
            self.display_name = f"{shown}@{self.model_revision}" if self.model_revision else shown
        if self.mode not in ("generative", "loglikelihood"):
            raise ConfigError(f"mode must be generative or loglikelihood, got {self.mode!r}")
        if self.num_samples < 1:
            raise ConfigError(f"num_samples must be at least 1, got {self.num_samples}")
        if self.max_items is not None and self.max_items < 1:
            raise ConfigError(f"max_items must be at least 1 (or null for all), got {self.max_items}")
        if self.extraction not in EXTRACTIONS:
            raise ConfigError(f"extraction must be one of {', '.join(EXTRACTIONS)}, got {self.extraction!r}")
        if self.recovery_rule not in RECOVERY_RULES:
            raise ConfigError(
                f"recovery_rule must be one of {', '.join(RECOVERY_RULES)}, got {self.recovery_rule!r}"
            )
        if self.engine not in ("medssr", "lighteval"):
            raise ConfigError(f"engine must be medssr or lighteval, got {self.engine!r}")
        if self.engine == "lighteval" and self.backend == "vllm":
            raise ConfigError(f"engine lighteval with backend vllm: {LIGHTEVAL_VLLM_UNSUPPORTED}")
        if self.engine == "lighteval" and (self.mode != "generative" or self.backend != "embedded"):
            raise ConfigError(
                "engine lighteval runs the generative protocol on a local model (backend embedded)"
            )

    @property
    def protocol(self) -> str:
        """How this run's answers are read, in words (`answers.Extraction.protocol`)."""
        if self.mode != "generative":
            return "loglikelihood"
        return Extraction(self.extraction, recovery_rule=self.recovery_rule).protocol

    @property
    def path_string(self) -> str:
        """The string the official rule matches model families in: the served or loaded model's path."""
        if self.backend == "endpoint" and self.endpoint.get("model"):
            return str(self.endpoint["model"])
        return path_string(self.model)

    def fingerprint(self) -> dict[str, Any]:
        keep = ("model", "model_revision", "backend", "chat", "num_samples", "temperature", "top_p", "top_k")
        return resume_fingerprint(self, keep=(*keep, "max_tokens", "seed", "mode", "engine"))
