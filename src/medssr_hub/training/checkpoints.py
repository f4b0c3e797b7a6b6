"""Checkpoints that fit: the disk a run will fill, estimated and checked before the first step.

A ZeRO-2 checkpoint of an 8B model is about 130 GB: the bf16 weights the Trainer saves, and DeepSpeed's
own `global_step*/` folder with the bf16 module again (`mp_rank_00_model_states.pt`) and the fp32 master
weights and Adam's two moments (`*_optim_states.pt`), 16 bytes a parameter (ZeRO-3 shards the module file,
so it writes about 14: the plan counts 16 for both); `save_total_limit` of them are kept (one more while
the newest is saved and the oldest not yet deleted), the final model is written beside them, and with
`push_checkpoints` on a local hub every saved checkpoint's weights are copied into the hub too. A run that
fills its disk dies at a save, hours in, with a half-written checkpoint. So the estimate is checked against
the free space of each disk before any model loads, and a run that cannot fit stops with the numbers and
the fixes named.
"""

from __future__ import annotations

import logging
import math
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from medssr_hub.errors import ConfigError

logger = logging.getLogger(__name__)

GB = 1e9
BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


def count_parameters(model_path: str, revision: str | None = None) -> int | None:
    """The model's parameter count, from its config alone (meta tensors: nothing is allocated or read);
    None where the config cannot be built that way (remote code, an unknown architecture)."""
    from transformers import AutoConfig

    try:
        return config_parameters(AutoConfig.from_pretrained(model_path, revision=revision))
    except (OSError, ValueError, KeyError, ImportError) as e:
        logger.warning("No disk estimate for %s (its parameter count is unknown: %s)", model_path, e)
        return None


def config_parameters(config) -> int:
    """The parameter count of a causal LM built from `config` on meta tensors (nothing allocated)."""
    from accelerate import init_empty_weights
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

    # The class itself, not `from_config`: in a ZeRO-3 launch that enters DeepSpeed's `zero.Init`, which
    # cannot partition meta tensors ("Cannot copy out of meta tensor").
    model_class = MODEL_FOR_CAUSAL_LM_MAPPING[type(config)]
    with init_empty_weights():
        model = model_class(config)
    return sum(p.numel() for p in model.parameters())


def planned_steps(training_args, rows: int, world_size: int, num_generations: int = 1) -> int:
    """Optimizer steps the run will take: `max_steps`, else the epochs over `rows` prompts (GRPO's batch
    counts completions, `num_generations` per prompt)."""
    if training_args.max_steps and training_args.max_steps > 0:
        return int(training_args.max_steps)
    per_step = (
        training_args.per_device_train_batch_size * training_args.gradient_accumulation_steps * world_size
    )
    prompts_per_step = max(1, per_step // max(1, num_generations))
    return math.ceil(rows / prompts_per_step) * math.ceil(training_args.num_train_epochs)


def planned_saves(training_args, steps: int, resumed_step: int = 0) -> tuple[int, int]:
    """How many checkpoints the run saves in all (every `save_steps`, a float below 1 being a ratio of the
    steps, or once an epoch), and how many of those a resumed run saved before `resumed_step`."""
    strategy = str(getattr(training_args.save_strategy, "value", training_args.save_strategy))
    if strategy == "no":
        return 0, 0
    if strategy == "epoch":  # the epochs already saved are not counted: the estimate errs high
        return math.ceil(training_args.num_train_epochs), 0
    interval = training_args.save_steps
    if interval < 1:
        interval = max(1, math.ceil(steps * interval))
    return int(steps // interval), int(min(resumed_step, steps) // interval)


def checkpoint_step(checkpoint: str | None) -> int:
    """The step a run resumes from, by the Trainer's folder name (`checkpoint-<step>`); 0 when it starts
    fresh, or when the folder is named otherwise (its saves are then counted again: the estimate errs
    high)."""
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

    match = re.fullmatch(rf"{PREFIX_CHECKPOINT_DIR}-(\d+)", Path(checkpoint).name) if checkpoint else None
    return int(match.group(1)) if match else 0


@dataclass
class DiskPlan:
    """What a run will write, by folder: bytes each, and how the numbers were reached."""

    needs: dict[Path, float] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)

    def add(self, folder: Path, nbytes: float, why: str) -> None:
        self.needs[folder] = self.needs.get(folder, 0.0) + nbytes
        self.lines.append(f"{why}: {nbytes / GB:,.1f} GB in {folder}")


def _existing(path: Path) -> Path:
    path = path.expanduser().absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def disk_plan(
    params: int,
    weights_dtype: str,
    training_args,
    *,
    steps: int,
    deepspeed: bool,
    peft: bool,
    hub_root: Path | None,
    push_checkpoints: bool,
    resumed_step: int = 0,
) -> DiskPlan:
    """The bytes a run writes: kept checkpoints (weights, plus optimizer state unless `save_only_model`),
    the final model, and (local hub) every pushed checkpoint's weights and the published final model. A run
    resumed at `resumed_step` counts only what it adds: the checkpoints saved before are on disk already."""
    plan = DiskPlan()
    out = Path(training_args.output_dir)
    weight_bytes = params * BYTES.get(weights_dtype or "float32", 4)
    if peft:  # adapters only: a few percent of the model at most; the merged final model is full size
        saved, optimizer = 0.05 * weight_bytes, 0.0
    else:
        saved = weight_bytes
        # Adam's two fp32 moments; DeepSpeed saves its fp32 master copy and the bf16 module as well.
        optimizer = 0.0 if training_args.save_only_model else params * (12 + 2 if deepspeed else 8)
    saves, before = planned_saves(training_args, steps, resumed_step)
    limit = training_args.save_total_limit
    # transformers' Trainer saves a checkpoint, then deletes the oldest beyond save_total_limit
    # (Trainer._save_checkpoint, then rotate_checkpoints): limit + 1 are on disk at once. A resumed run
    # finds the last `limit` it saved already there.
    peak = min(saves, limit + 1) if limit else saves
    on_disk = min(before, limit) if limit else before
    kept = peak - on_disk if saves > before else 0
    if kept:
        notes = []
        if limit and peak > limit:
            notes.append(f"save_total_limit {limit}, plus the newest before the oldest is deleted")
        if on_disk:
            notes.append(f"{on_disk} saved before step {resumed_step} on disk already")
        plan.add(
            out,
            kept * (saved + optimizer),
            f"{kept} kept checkpoint(s) of {(saved + optimizer) / GB:,.1f} GB"
            + (f" ({'; '.join(notes)})" if notes else ""),
        )
    plan.add(out, weight_bytes, "the final model")
    if hub_root is not None:
        if push_checkpoints and saves > before:
            pushed = saves - before
            plan.add(hub_root, pushed * saved, f"{pushed} checkpoint(s) pushed to the local hub")
        plan.add(hub_root, weight_bytes, "the final model published to the local hub")
    return plan


def check_disk(plan: DiskPlan | None) -> None:
    """Each disk's free space against what the plan writes on it; a shortfall stops the run (no plan: no
    check)."""
    if plan is None:
        return
    by_device: dict[int, tuple[Path, float]] = {}
    for folder, nbytes in plan.needs.items():
        existing = _existing(folder)
        device = os.stat(existing).st_dev
        first, total = by_device.get(device, (existing, 0.0))
        by_device[device] = (first, total + nbytes)
    for folder, need in by_device.values():
        free = shutil.disk_usage(folder).free
        logger.info(
            "Disk: this run writes about %.1f GB where %s has %.1f GB free", need / GB, folder, free / GB
        )
        if need > free:
            raise ConfigError(
                f"not enough disk: this run writes about {need / GB:,.1f} GB ({'; '.join(plan.lines)}) where "
                f"{folder} has {free / GB:,.1f} GB free. Lower save_total_limit, raise save_steps, set "
                "save_only_model: true (no optimizer state: a resume restarts the optimizer), use an "
                "output_dir on a larger disk, or set check_disk: false to run anyway"
            )
