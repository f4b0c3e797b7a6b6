"""SFT on (question, reasoning, answer): the distillation baseline the paper compares against.

`accelerate launch recipes/sft.py --config recipes/smollm2/sft.yaml`. The data is any MCQ dataset in the
record schema whose rows carry a reasoning column (e.g. a teacher's chain of thought); each example is
the answer prompt followed by the reasoning and "The answer is X.", and only the completion is trained.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from trl import ModelConfig, SFTConfig, SFTTrainer, TrlParser

from medssr_hub.training import runner
from medssr_hub.training.args import MedSSRScriptArguments
from medssr_hub.training.data import sft_dataset
from medssr_hub.utils import setup_logging


def parse_args(argv: Sequence[str] | None = None):
    parser = TrlParser((MedSSRScriptArguments, SFTConfig, ModelConfig))
    return parser.parse_args_and_config(args=list(argv) if argv is not None else None)


def main(script_args: MedSSRScriptArguments, training_args: SFTConfig, model_args: ModelConfig):
    setup_logging()
    dataset, info = sft_dataset(script_args)
    return runner.train(SFTTrainer, script_args, training_args, model_args, dataset, info)


def cli(argv: Sequence[str] | None = None) -> int:
    main(*parse_args(argv if argv is not None else sys.argv[1:]))
    return 0
