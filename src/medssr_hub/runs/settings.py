"""The settings the runs share. They are the demo's whole config (`medssr-hub demo --config
recipes/demo.yaml`), and the ablation's config holds them beside its own (`runs.ablation.AblationConfig`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from medssr_hub.answers import READING
from medssr_hub.chat import default_chat, require_chat
from medssr_hub.config import JsonDict
from medssr_hub.errors import ConfigError
from medssr_hub.field_help import arg, documented
from medssr_hub.generation.base import SamplingParams
from medssr_hub.generation.offline_vllm import native_bf16_cpu
from medssr_hub.resume import resume_fingerprint

logger = logging.getLogger(__name__)


@documented
@dataclass
class RunSettings:
    """`medssr-hub demo --config recipes/demo.yaml [--field value ...]`: the whole pipeline, small. What the
    demo and the ablation share: the base model and engine, the data steps (synthesis, labeling, held-out
    vignettes), the training stages, the evaluation protocol and where results go (the defaults are the
    demo's; the ablation sets its own for `output_dir` and `publish_repo`)."""

    model: str = arg(
        "the base model every step starts from: embedded (SmolLM2-135M-Instruct) or a model folder or repo id",
        "embedded",
    )
    backend: str = arg(
        "the engine of the generating steps (synthesis, labeling, evaluation): embedded (transformers in this "
        "process), vllm (vLLM's offline engine in this process, set by `vllm`), or auto: vllm where it is "
        "installed and the machine has a GPU or a CPU with native bfloat16 (AVX-512 BF16), else embedded "
        "(bench/demo_backends.py); training rollouts follow the stage recipes' use_vllm",
        "embedded",
    )
    vllm: JsonDict = field(default_factory=JsonDict)
    chat: bool | None = None
    benchmarks_dir: str | None = arg(
        "the folder of MedSSR-format benchmark JSON files step 5 reads; null: $MEDSSR_BENCHMARKS_DIR, else "
        "../shared/benchmarks",
        None,
    )
    items_per_benchmark: int = arg("step 5: the first items of each benchmark file evaluated", 6)
    num_samples: int = arg("step 5: samples per item (mean and std over them; the paper: 4)", 2)
    temperature: float = SamplingParams.temperature  # sampling defaults: the evaluation protocol's
    top_p: float = SamplingParams.top_p
    top_k: int = SamplingParams.top_k
    max_tokens: int = arg("step 5: the most tokens one answer may have", 192)
    seed: int = SamplingParams.seed
    batch_size: int = 64
    torch_threads: int | None = arg("CPU threads torch may use; null: torch's default (all cores)", None)
    output_dir: str = arg(
        "the folder every step writes into, and resumes from when run again", "outputs/demo"
    )
    synthesis: JsonDict | None = arg(
        "step 1, knowledge-enhanced synthesis: SynthesisConfig fields (`medssr-hub synthesize --help`); null: skip "
        "steps 1-4",
        None,
    )
    labeling: JsonDict | None = arg(
        "step 2, pseudo-labels by majority vote of the policy: LabelConfig fields (`medssr-hub label --help`); "
        "null: skip steps 2-4",
        None,
    )
    stage1: JsonDict | None = arg(
        "step 3, stage 1 GRPO on the pseudo-labeled split: `config` (a recipe YAML) plus overrides of its "
        "fields; null or max_steps 0: skip steps 3-4",
        None,
    )
    heldout: JsonDict | None = arg(
        "step 4a, stage 2's gold-keyed training set (SynthesisConfig fields: held-out vignettes offline); "
        "null: skip step 4",
        None,
    )
    stage2: JsonDict | None = arg(
        "step 4b, stage 2 GRPO from the stage 1 model: `config` plus overrides; null or max_steps 0: skip",
        None,
    )
    keyed_eval: JsonDict | None = arg(
        "step 5a, the method check: held-out keyed vignettes (SynthesisConfig fields); vignettes of a disease "
        "stage 1 or 2 trained on are dropped; null: skip",
        None,
    )
    keyed_eval_size: int = arg(
        "step 5a: keyed vignettes every model answers, scored against their construction keys (95 percent "
        "bootstrap intervals over them)",
        48,
    )
    keyed_max_tokens: int | None = arg("step 5a: the most tokens one answer may have; null: max_tokens", None)
    keyed_num_samples: int | None = arg("step 5a: samples per vignette; null: num_samples", None)
    rare_subset: bool = arg(
        "step 5 also scores a rare-disease row: the benchmark items that name a catalogue rare disease "
        "(`medssr-hub raredis-subset`; RareDis-Sub itself is on the Hub only)",
        True,
    )
    extraction: str = arg(
        "how answers are read, by every stage alike (labeling's votes, the accuracy reward, evaluation): "
        "official (the official script's rule) or lenient (ours)",
        READING,
    )
    launch: JsonDict | None = arg(
        "run each training as its own `accelerate launch` (a node's GPUs): num_processes, config_file (an "
        "accelerate config, e.g. recipes/accelerate_configs/zero3.yaml) and env (variables for it); null: "
        "train in this process",
        None,
    )
    publish_repo: str | None = arg(
        "step 6: publish the leaderboard, with per-item details, as this dataset repo; null: do not publish",
        "medssr-hub/demo-leaderboard",
    )
    publish_version: str = "v0.1.0"
    hub: str | None = None

    def __post_init__(self) -> None:
        for name in ("synthesis", "labeling", "stage1", "heldout", "stage2", "keyed_eval", "launch"):
            if getattr(self, name) is not None:
                setattr(self, name, JsonDict(getattr(self, name)))
        if self.backend not in ("auto", "embedded", "vllm"):
            raise ConfigError(f"demo backend must be auto, embedded or vllm, got {self.backend!r}")
        self.backend = faster_backend() if self.backend == "auto" else self.backend
        self.vllm = JsonDict(self.vllm)
        self.chat = default_chat(self.chat, self.model, self.backend)
        require_chat(self.chat)

    def run_fingerprint(self) -> dict[str, Any]:
        """Settings that change results: a resumed run must match them (with the `vllm:` engine's dtype and
        quantization, as every stage's fingerprint)."""
        keep = ("model", "chat", "items_per_benchmark", "num_samples", "temperature", "top_p", "top_k")
        keep = (*keep, "rare_subset", "keyed_eval_size", "keyed_max_tokens", "keyed_num_samples")
        stages = ("synthesis", "labeling", "stage1", "heldout", "stage2", "keyed_eval")
        # The default backend adds no key, so a run's fingerprint names only what differs from the default.
        engine = {"backend": self.backend} if self.backend != "embedded" else {}
        return resume_fingerprint(self, keep=(*keep, *stages, "max_tokens", "seed")) | engine


def faster_backend() -> str:
    """The engine that ran the demo faster where measured (bench/demo_backends.py, docs/backends.md): vLLM on a GPU
    or on a CPU with native bfloat16; elsewhere vLLM's CPU engine falls back to float32 and was slower than
    transformers."""
    import importlib.util

    import torch

    if importlib.util.find_spec("vllm") is None:
        choice, why = "embedded", "vLLM is not installed"
    elif torch.cuda.is_available() or native_bf16_cpu():
        choice, why = "vllm", "a GPU or a CPU with native bfloat16"
    else:
        choice, why = "embedded", "no GPU, and no native bfloat16 on this CPU"
    logger.info("backend auto: %s (%s)", choice, why)
    return choice
