"""The dtype the trained weights are held in: fp32 master weights wherever nothing else keeps them.

`dtype: bfloat16` in a recipe means "compute in bf16". Under DeepSpeed (ZeRO-2/3) the engine keeps fp32
master copies of bf16 weights, so loading bf16 is right. Anywhere else (DDP, FSDP, one GPU, CPU) the
optimizer would update the bf16 tensors themselves: bf16 has 8 bits of mantissa, so an Adam step at
lr 1e-6 (the paper's) is below half a unit in the last place for almost every weight, rounds away, and
the model never changes. There we load fp32 weights and let `bf16: true` autocast the compute, which is
what transformers' Trainer and accelerate do for mixed precision. LoRA keeps bf16: the base weights are
frozen and PEFT keeps its adapters in fp32.
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
