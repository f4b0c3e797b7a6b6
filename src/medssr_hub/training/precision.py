"""The dtype the trained weights are held in: fp32 master weights wherever nothing else keeps them.

`dtype: bfloat16` in a recipe means "compute in bf16". Under DeepSpeed (ZeRO-2/3) the engine keeps fp32
master copies of bf16 weights, so loading bf16 is right. Anywhere else (DDP, FSDP, one GPU, CPU) the
optimizer would update the bf16 tensors themselves: bf16 has 8 bits of mantissa, so an Adam step at
lr 1e-6 (our recipes' rate; no source we can read gives the paper's) is below half a unit in the last
place for almost every weight, rounds away, and the model never changes. There we load fp32 weights and
let `bf16: true` autocast the compute, which is what transformers' Trainer and accelerate do for mixed
precision. LoRA keeps bf16: the base weights are frozen and PEFT keeps its adapters in fp32.
"""

from __future__ import annotations

import logging
import os

logger = logging.getLogger(__name__)

HALF = ("bfloat16", "float16")


def uses_deepspeed(training_args) -> bool:
    """DeepSpeed from the TrainingArguments (`deepspeed: ds.json`) or from `accelerate launch --config_file`
    of a DeepSpeed accelerate config (which exports ACCELERATE_USE_DEEPSPEED)."""
    return bool(getattr(training_args, "deepspeed", None)) or (
        os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() in ("1", "true")
    )


def sharded_weights(training_args) -> bool:
    """Whether no single process holds the whole model: FSDP (TrainingArguments or an accelerate FSDP
    config) or DeepSpeed ZeRO-3 (a `deepspeed` config of stage 3, or an accelerate DeepSpeed config)."""
    env = os.environ
    if getattr(training_args, "fsdp", None) or env.get("ACCELERATE_USE_FSDP", "").lower() in ("1", "true"):
        return True
    if env.get("ACCELERATE_DEEPSPEED_ZERO_STAGE") == "3":
        return True
    deepspeed = getattr(training_args, "deepspeed", None)
    return bool(deepspeed) and '"stage": 3' in str(deepspeed).replace("'", '"')


def weights_dtype(model_args, training_args) -> str | None:
    """The dtype to load the trained model's weights in: the config's, except half precision for full
    fine-tuning outside DeepSpeed, which becomes float32 master weights (the compute stays bf16 when
    `bf16: true`)."""
    dtype = model_args.dtype
    if dtype not in HALF or model_args.use_peft or uses_deepspeed(training_args):
        return dtype
    if not (training_args.bf16 or training_args.fp16):
        logger.warning(
            "dtype %s without bf16/fp16 mixed precision: weights load in float32 and compute runs in float32 "
            "(set bf16: true to compute in bf16)",
            dtype,
        )
    else:
        logger.info(
            "dtype %s outside DeepSpeed: float32 master weights with %s autocast (a %s weight would round "
            "away updates at this learning rate)",
            dtype,
            "bf16" if training_args.bf16 else "fp16",
            dtype,
        )
    return "float32"


GIB = 2**30
ZERO2 = "recipes/accelerate_configs/zero2.yaml"
# A full fine-tune's replica under our rule, per process: float32 weights (4 bytes a parameter), their
# float32 gradients (4) and AdamW's two float32 moments (8). Activations and the CUDA context come on top.
REPLICA_BYTES = 16


def replica_bytes(params: int, training_args) -> int:
    """Bytes one process holds for a full fine-tune that no process shards (DDP, one device): the replica,
    plus TRL's float32 reference model where `beta` is not 0 (grpo_trainer.py builds it then)."""
    reference = 4 if getattr(training_args, "beta", 0.0) else 0
    return params * (REPLICA_BYTES + reference)


def device_memory(training_args) -> tuple[int, str] | None:
    """(bytes, what) each process may use: its GPU's total memory, or on CPU the host's memory shared by
    the processes this node starts (LOCAL_WORLD_SIZE); None where neither is known."""
    import torch

    if torch.cuda.is_available() and not getattr(training_args, "use_cpu", False):
        index = int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count()
        props = torch.cuda.get_device_properties(index)
        return props.total_memory, f"GPU {index} ({props.name})"
    try:
        host = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return None
    local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return host // local, f"this host's memory shared by {local} process{'es' if local > 1 else ''}"


def check_fits(params: int | None, model_args, training_args) -> None:
    """Refuse, before any model loads, a full fine-tune whose replica cannot fit one process's device: DDP
    holds the whole model, its gradients and its optimizer state on every GPU; DeepSpeed ZeRO shards them.
    Nothing is checked for LoRA, DeepSpeed or FSDP, or where the parameter count is unknown."""
    from medssr_hub.errors import ConfigError

    if (
        params is None
        or model_args.use_peft
        or uses_deepspeed(training_args)
        or sharded_weights(training_args)
    ):
        return
    memory = device_memory(training_args)
    if memory is None:
        return
    have, where = memory
    need = replica_bytes(params, training_args)
    logger.info(
        "Memory: a full replica needs about %.1f GiB where %s has %.1f GiB", need / GIB, where, have / GIB
    )
    if need > have:
        raise ConfigError(
            f"a full fine-tune of {params / 1e9:,.2f}B parameters without sharding needs about {need / GIB:,.0f} "
            f"GiB a process (float32 weights, gradients and AdamW moments: {REPLICA_BYTES} bytes a parameter"
            f"{', and the reference model of beta != 0' if need > params * REPLICA_BYTES else ''}; activations "
            f"on top) where {where} has {have / GIB:,.0f} GiB: launch with `accelerate launch --config_file "
            f"{ZERO2}` (DeepSpeed shards the gradients and optimizer state), or set use_peft: true"
        )
