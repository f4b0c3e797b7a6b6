"""What the GRPO and SFT recipes share: model resolution, resume, checkpoint publishing, the final model."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from transformers import TrainerCallback
from transformers.trainer_utils import get_last_checkpoint
from trl import ModelConfig, get_peft_config

from medssr_hub import tracking
from medssr_hub.hub import open_hub
from medssr_hub.modeling import path_string
from medssr_hub.published import publishable
from medssr_hub.resolve import resolve_model
from medssr_hub.resume import guard_resume, resume_fingerprint
from medssr_hub.training.args import MedSSRScriptArguments
from medssr_hub.training.checkpoints import (
    DiskPlan,
    check_disk,
    checkpoint_step,
    count_parameters,
    disk_plan,
    planned_steps,
)
from medssr_hub.training.data import DataInfo
from medssr_hub.training.hubsync import CardContext, HubCheckpointCallback, finish, run_config
from medssr_hub.training.precision import check_fits, uses_deepspeed, weights_dtype
from medssr_hub.training.vllm_sync import (
    configure_colocated_engine,
    reload_colocated_layerwise,
    require_vllm,
    trace_sync,
)

logger = logging.getLogger(__name__)


class TrainerBound(TrainerCallback):
    """A callback that needs the trainer itself (its model, its callback handler): bound once it is built."""

    def __init__(self):
        self.trainer = None

    def bind(self, trainer) -> None:
        self.trainer = trainer


def resume_checkpoint(script_args: MedSSRScriptArguments, training_args) -> str | None:
    """An explicit resume_from_checkpoint wins; else the last checkpoint in output_dir, unless fresh_start."""
    if training_args.resume_from_checkpoint:
        return training_args.resume_from_checkpoint
    if script_args.fresh_start:
        return None
    last = get_last_checkpoint(training_args.output_dir) if Path(training_args.output_dir).is_dir() else None
    if last:
        logger.info("Resuming from %s (set fresh_start to start over)", last)
    return last


RESUME_FILE = "medssr_resume.json"


def guard_training_resume(training_args, checkpoint: str | None, model_path: str, revision, dataset) -> None:
    """A run resumes from a checkpoint only for the same model and the same training data (content, not
    name): else it stops with the fix named. The main process records what this run trains on."""
    rows = dataset.to_list() if hasattr(dataset, "to_list") else list(dataset)
    fingerprint = resume_fingerprint({"model": model_path, "model_revision": revision}, data=rows)
    guard_resume(
        training_args.output_dir,
        fingerprint,
        "training",
        resuming=checkpoint is not None,
        record=training_args.process_index == 0,
        file=RESUME_FILE,
        fix="set fresh_start: true to start over there, or use another output_dir",
    )


def plan_disk(
    script_args, training_args, model_args, params: int | None, dtype, rows: int, checkpoint: str | None
) -> DiskPlan | None:
    """What this run will write to disk (checkpoints, final model, local-hub copies), from the model's
    parameter count, beyond what the checkpoint it resumes from saved; every rank checks it, so a
    shortfall stops them all before any model loads."""
    if params is None:
        return None
    local_hub = None
    if script_args.publish_repo:
        hub = open_hub(script_args.hub)
        local_hub = getattr(hub, "root", None)
    return disk_plan(
        params,
        dtype,
        training_args,
        steps=planned_steps(
            training_args, rows, training_args.world_size, getattr(training_args, "num_generations", 1) or 1
        ),
        deepspeed=uses_deepspeed(training_args),
        peft=model_args.use_peft,
        hub_root=local_hub,
        push_checkpoints=script_args.push_checkpoints,
        resumed_step=checkpoint_step(checkpoint),
    )


def card_context(script_args, training_args, model_args, info: DataInfo) -> CardContext | None:
    if not script_args.publish_repo:
        return None
    base_revision = model_args.model_revision if model_args.model_revision not in (None, "main") else None
    local = Path(script_args.dataset_name).expanduser().exists()
    dataset_revision = "local file/folder" if local else script_args.dataset_revision or "latest"
    return CardContext(
        repo_id=script_args.publish_repo,
        version=script_args.publish_version,
        stage=script_args.stage,
        base_model=publishable(path_string(model_args.model_name_or_path)),
        datasets=[(publishable(script_args.dataset_name), dataset_revision)],
        config=publishable(run_config(script_args, training_args, model_args)),
        hub=script_args.hub,
        data_fields={
            "base model revision": base_revision or "default",
            **({"training data": script_args.data_description} if script_args.data_description else {}),
            **info.card_fields(),
            **tracking.card_fields(training_args),
        },
    )


def train(
    trainer_cls,
    script_args: MedSSRScriptArguments,
    training_args,
    model_args: ModelConfig,
    dataset,
    info: DataInfo,
    on_trainer: Callable | None = None,
    callbacks: Sequence[TrainerBound] = (),
    **trainer_kwargs,
):
    """Build the TRL trainer on the resolved model, train (resuming), save and publish the final model.
    `callbacks` run before the checkpoint publisher at each save (so a checkpoint's evaluation reaches its
    card) and are bound to the trainer."""
    # lighteval's transformers model turns autograd off for the whole process when imported (module level,
    # lighteval 0.13): a run that evaluated with it first (the same Python process) would train nothing.
    torch.set_grad_enabled(True)
    require_vllm(training_args)
    model_path, revision = resolve_model(
        model_args.model_name_or_path, model_args.model_revision, script_args.hub
    )
    if tracking.reports_to_trackio(training_args):  # named before the card that links to it
        training_args.run_name = tracking.training_run_name(script_args, training_args)
    dtype = weights_dtype(model_args, training_args)
    training_args.model_init_kwargs = {
        "revision": revision,
        "dtype": dtype,
        "attn_implementation": model_args.attn_implementation,
        **(training_args.model_init_kwargs or {}),
    }
    context = card_context(script_args, training_args, model_args, info)
    if context is not None and training_args.process_index == 0:
        # A version published from other settings is refused now, before any step is trained.
        context.release().check()
    checkpoint = resume_checkpoint(script_args, training_args)
    guard_training_resume(training_args, checkpoint, model_path, revision, dataset)  # before any model loads
    # Every rank checks what the run needs before any model loads (from the config alone), so all stop.
    params = (
        count_parameters(model_path, revision) if script_args.check_disk or script_args.check_memory else None
    )
    if script_args.check_memory:
        check_fits(params, model_args, training_args)
    if script_args.check_disk:
        check_disk(plan_disk(script_args, training_args, model_args, params, dtype, len(dataset), checkpoint))
    publisher = [HubCheckpointCallback(context)] if context and script_args.push_checkpoints else []
    configure_colocated_engine(training_args, dtype)
    trainer = trainer_cls(
        model=model_path,
        args=training_args,
        train_dataset=dataset,
        peft_config=get_peft_config(model_args),
        callbacks=[*callbacks, *publisher],
        **trainer_kwargs,
    )
    for callback in callbacks:
        callback.bind(trainer)
    reload_colocated_layerwise(trainer)
    trace_sync(trainer)
    if on_trainer is not None:
        on_trainer(trainer)
    trainer.train(resume_from_checkpoint=checkpoint)
    final = finish(trainer, script_args, context, training_args.output_dir, peft=model_args.use_peft)
    trainer.accelerator.print(f"Final model in {final}")
    if training_args.world_size > 1:
        # Each process of a launch ends its process group itself, once, when nothing more is exchanged
        # (PyTorch's shutdown rule; the Trainer's `end`). A rank that exits with gloo's worker threads
        # alive can abort at interpreter exit ("terminate called without an active exception",
        # pytorch/pytorch#190489), failing a finished run: seen here on the rank that is not main, which
        # exits while the main one still publishes. `finish` has waited for every publish by now.
        trainer.end()
    return trainer
