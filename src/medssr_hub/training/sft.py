"""SFT on (question, reasoning, answer): the distillation baseline the paper compares against.

`accelerate launch recipes/sft.py --config recipes/smollm2/sft.yaml`. The data is any MCQ dataset in the
record schema whose rows carry a reasoning column (e.g. a teacher's chain of thought); each example is
the answer prompt followed by the reasoning and "The answer is X.", and only the completion is trained.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from trl import ModelConfig, SFTConfig, SFTTrainer, TrlParser, get_peft_config

from medssr_hub.hub import resolve_model_source
from medssr_hub.training.args import MedSSRScriptArguments
from medssr_hub.training.data import sft_dataset
from medssr_hub.training.grpo import card_context, resume_checkpoint
from medssr_hub.training.hubsync import HubCheckpointCallback, finish
from medssr_hub.utils import setup_logging

logger = logging.getLogger(__name__)


def parse_args(argv: Sequence[str] | None = None):
    parser = TrlParser((MedSSRScriptArguments, SFTConfig, ModelConfig))
    return parser.parse_args_and_config(args=list(argv) if argv is not None else None)


def main(script_args: MedSSRScriptArguments, training_args: SFTConfig, model_args: ModelConfig):
    setup_logging()
    model_path, revision = resolve_model_source(
        model_args.model_name_or_path, model_args.model_revision, script_args.hub
    )
    dataset, info = sft_dataset(script_args)
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
    trainer = SFTTrainer(
        model=model_path,
        args=training_args,
        train_dataset=dataset,
        peft_config=get_peft_config(model_args),
        callbacks=callbacks,
    )
    trainer.train(resume_from_checkpoint=resume_checkpoint(script_args, training_args))
    final = finish(trainer, script_args, context, training_args.output_dir, peft=model_args.use_peft)
    trainer.accelerator.print(f"Final model in {final}")
    return trainer


def cli(argv: Sequence[str] | None = None) -> int:
    main(*parse_args(argv if argv is not None else sys.argv[1:]))
    return 0
