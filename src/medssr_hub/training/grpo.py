"""GRPO for both MedSSR stages, on TRL's GRPOTrainer: `accelerate launch recipes/stage1.py --config X.yaml`.

Stage 1: pseudo-labeled synthetic questions (`target: label`); stage 2: human-annotated questions
(`target: answer`), starting from the stage 1 model (a path, or a repo id + `model_revision`). The
recipes differ only by YAML. A run resumes from the last checkpoint in `output_dir` unless
`fresh_start` is set.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from trl import GRPOConfig, ModelConfig

from medssr_hub.config import parse_config
from medssr_hub.errors import InputError
from medssr_hub.modeling import path_string
from medssr_hub.training import runner
from medssr_hub.training.args import MedSSRScriptArguments
from medssr_hub.training.data import grpo_dataset
from medssr_hub.training.precision import sharded_weights
from medssr_hub.training.reward_registry import build_reward_funcs
from medssr_hub.training.rewards import AccuracyReward
from medssr_hub.utils import setup_logging

CONFIG_TYPES = (MedSSRScriptArguments, GRPOConfig, ModelConfig)


def parse_args(argv: Sequence[str] | None = None, prog: str | None = None):
    """(script arguments, GRPOConfig, ModelConfig) from `--config FILE.yaml` plus command-line overrides."""
    return parse_config(CONFIG_TYPES, sys.argv[1:] if argv is None else argv, prog=prog)


def refuse_recovery_on_sharded_weights(script_args: MedSSRScriptArguments, training_args) -> None:
    """The recovery pass runs the policy on the ranks whose completions need it, each on its own. Under
    ZeRO-3 or FSDP every forward gathers the shards, a collective all ranks must join: a rank alone stalls,
    and DeepSpeed's gather under the pass's inference mode leaves weights autograd refuses."""
    if script_args.recovery and "accuracy" in script_args.reward_funcs and sharded_weights(training_args):
        raise InputError(
            "recovery: true needs every process to hold the whole policy: not with ZeRO-3 or FSDP, whose "
            "weights are sharded. Set --recovery false (letters from the completions alone), or launch with "
            "--config_file recipes/accelerate_configs/zero2.yaml"
        )


def main(
    script_args: MedSSRScriptArguments,
    training_args: GRPOConfig,
    model_args: ModelConfig,
    callbacks: Sequence = (),
):
    # Imported here, not at the top: TRL's GRPOTrainer imports vLLM when it is installed, and a training
    # process that uses no vLLM rollouts keeps it out first (`vllm_sync.keep_vllm_out`, before this import).
    from medssr_hub.training.stops import MedSSRGRPOTrainer, add_stop_kwargs, rollout_stops

    setup_logging()
    refuse_recovery_on_sharded_weights(script_args, training_args)
    dataset, info = grpo_dataset(script_args)
    stops = rollout_stops(script_args)
    add_stop_kwargs(training_args, stops)
    reward_funcs = build_reward_funcs(
        script_args.reward_funcs,
        script_args,
        training_args.max_completion_length,
        path_string=path_string(model_args.model_name_or_path),
        num_generations=training_args.num_generations,
    )

    def bind_recovery(trainer) -> None:  # the recovery pass generates with the policy being trained
        for func in reward_funcs:
            for recovery in func.recoveries if isinstance(func, AccuracyReward) else []:
                recovery.bind(trainer)

    return runner.train(
        MedSSRGRPOTrainer,
        script_args,
        training_args,
        model_args,
        dataset,
        info,
        on_trainer=bind_recovery,
        callbacks=callbacks,
        reward_funcs=reward_funcs,
        stops=stops,
    )


def cli(argv: Sequence[str] | None = None) -> int:
    main(*parse_args(argv))
    return 0
