"""SFT on (question, reasoning, answer): the distillation baseline the paper compares against.

`accelerate launch recipes/sft.py --config recipes/smollm2/sft.yaml`. The data is any MCQ dataset in the
record schema whose rows carry a reasoning column (e.g. a teacher's chain of thought); each example is
the answer prompt followed by the reasoning and "The answer is X.", and only the completion is trained.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from trl import ModelConfig, SFTConfig, SFTTrainer

from medssr_hub.config import parse_config
from medssr_hub.training import runner
from medssr_hub.training.args import MedSSRScriptArguments
from medssr_hub.training.data import sft_dataset
from medssr_hub.utils import setup_logging

CONFIG_TYPES = (MedSSRScriptArguments, SFTConfig, ModelConfig)


def parse_args(argv: Sequence[str] | None = None, prog: str | None = None):
    """(script arguments, SFTConfig, ModelConfig) from `--config FILE.yaml` plus command-line overrides."""
    return parse_config(CONFIG_TYPES, sys.argv[1:] if argv is None else argv, prog=prog)


def main(
    script_args: MedSSRScriptArguments,
    training_args: SFTConfig,
    model_args: ModelConfig,
    callbacks: Sequence = (),
):
    setup_logging()
    dataset, info = sft_dataset(script_args)
    return runner.train(
        SFTTrainer, script_args, training_args, model_args, dataset, info, callbacks=callbacks
    )


def cli(argv: Sequence[str] | None = None) -> int:
    main(*parse_args(argv))
    return 0
