"""GRPO for both MedSSR stages, on TRL's GRPOTrainer: `accelerate launch recipes/stage1.py --config X.yaml`.

Stage 1: pseudo-labeled synthetic questions (`target: label`); stage 2: human-annotated questions
(`target: answer`), starting from the stage 1 model (a path, or a repo id + `model_revision`). The
recipes differ only by YAML. A run resumes from the last checkpoint in `output_dir` unless
`fresh_start` is set.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from transformers.trainer_utils import get_last_checkpoint
from trl import GRPOConfig, GRPOTrainer, ModelConfig, TrlParser, get_peft_config

from medssr_hub.hub import resolve_model_source
from medssr_hub.modeling import EMBEDDED, EMBEDDED_SOURCE
from medssr_hub.training.args import MedSSRScriptArguments
from medssr_hub.training.data import grpo_dataset
from medssr_hub.training.hubsync import (
    CardContext,
    HubCheckpointCallback,
    finish,
    run_config,
)
from medssr_hub.training.rewards import AccuracyReward, build_reward_funcs
from medssr_hub.utils import setup_logging

logger = logging.getLogger(__name__)


def parse_args(argv: Sequence[str] | None = None):
    parser = TrlParser((MedSSRScriptArguments, GRPOConfig, ModelConfig))
    return parser.parse_args_and_config(args=list(argv) if argv is not None else None)


def base_model_name(model_args: ModelConfig) -> str:
    name = model_args.model_name_or_path
    return EMBEDDED_SOURCE.split(" ")[0] if name in (None, "", EMBEDDED) else name


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


def card_context(script_args, training_args, model_args) -> CardContext | None:
    if not script_args.publish_repo:
        return None
    base_revision = model_args.model_revision if model_args.model_revision not in (None, "main") else None
    base = base_model_name(model_args)
    local = Path(script_args.dataset_name).expanduser().exists()
    dataset_revision = "local file/folder" if local else script_args.dataset_revision or "latest"
    return CardContext(
        repo_id=script_args.publish_repo,
        version=script_args.publish_version,
        stage=script_args.stage,
        base_model=base,
        datasets=[(script_args.dataset_name, dataset_revision)],
        config=run_config(script_args, training_args, model_args),
        hub=script_args.hub,
        data_fields={"base model revision": base_revision or "default"},
    )


def main(script_args: MedSSRScriptArguments, training_args: GRPOConfig, model_args: ModelConfig):
    setup_logging()
    model_path, revision = resolve_model_source(
        model_args.model_name_or_path, model_args.model_revision, script_args.hub
    )
    dataset, info = grpo_dataset(script_args)
    reward_funcs = build_reward_funcs(
        script_args.reward_funcs, script_args, training_args.max_completion_length
    )
    training_args.model_init_kwargs = {
        "revision": revision,
        "dtype": model_args.dtype,
        "attn_implementation": model_args.attn_implementation,
        **(training_args.model_init_kwargs or {}),
    }
    context = card_context(script_args, training_args, model_args)
    if context is not None:
        context.data_fields = {**context.data_fields, **info.card_fields()}
    callbacks = (
        [HubCheckpointCallback(context)] if context is not None and script_args.push_checkpoints else []
    )
    trainer = GRPOTrainer(
        model=model_path,
        reward_funcs=reward_funcs,
        args=training_args,
        train_dataset=dataset,
        peft_config=get_peft_config(model_args),
        callbacks=callbacks,
    )
    for func in reward_funcs:
        if isinstance(func, AccuracyReward) and func.recovery is not None:
            func.recovery.bind(trainer)
    trainer.train(resume_from_checkpoint=resume_checkpoint(script_args, training_args))
    final = finish(trainer, script_args, context, training_args.output_dir, peft=model_args.use_peft)
    trainer.accelerator.print(f"Final model in {final}")
    return trainer


def cli(argv: Sequence[str] | None = None) -> int:
    main(*parse_args(argv if argv is not None else sys.argv[1:]))
    return 0
