"""The reward registry: a dict of names to builders, as open-r1's `REWARD_FUNCS_REGISTRY` is. `accuracy`
(against the offline pseudo-label, gold or the construction key; with `target: vote` against each group's
online majority), `format`, `length` (TRL's DAPO soft overlong punishment), or any reward function by dotted
import path."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from medssr_hub.answers import Extraction
from medssr_hub.errors import InputError
from medssr_hub.training.online_vote import OnlineVoteReward
from medssr_hub.training.rewards import AccuracyReward, PolicyRecovery, format_reward


@dataclass(frozen=True)
class RewardContext:
    """What a builder may need besides the script arguments."""

    args: object  # MedSSRScriptArguments
    max_completion_length: int
    path_string: str  # the policy's id, which `recovery_rule: script_path_string` matches families in
    num_generations: int  # the group size an online vote runs over


def _accuracy(ctx: RewardContext) -> Callable:
    args = ctx.args
    extraction = Extraction(args.extraction, ctx.path_string, recovery_rule=args.recovery_rule)
    recovery = PolicyRecovery(chat=args.chat, extraction=extraction) if args.recovery else None
    if args.target == "vote":
        return OnlineVoteReward(ctx.num_generations, recovery, args.recovered_credit, extraction)
    return AccuracyReward(recovery, args.recovered_credit, extraction)


def _length(ctx: RewardContext) -> Callable:
    """TRL's DAPO soft overlong punishment: 0 until `length_cache` tokens before the limit."""
    from trl.rewards import get_soft_overlong_punishment

    limit = ctx.max_completion_length
    length = get_soft_overlong_punishment(limit, min(ctx.args.length_cache, limit))
    length.__name__ = "length"
    return length


REWARDS: dict[str, Callable[[RewardContext], Callable]] = {
    "accuracy": _accuracy,
    "format": lambda ctx: format_reward,
    "length": _length,
}


def build_reward_funcs(
    names: Sequence[str], args, max_completion_length: int, path_string: str = "", num_generations: int = 1
) -> list[Callable]:
    """Reward callables by registry name (`REWARDS`) or dotted import path (`my_pkg.rewards.fn`). With
    `target: vote` the accuracy reward votes online within each group of `num_generations`."""
    ctx = RewardContext(args, max_completion_length, path_string, num_generations)
    funcs = []
    for name in names:
        if name in REWARDS:
            funcs.append(REWARDS[name](ctx))
        elif "." in name:
            module, attr = name.rsplit(".", 1)
            funcs.append(getattr(importlib.import_module(module), attr))
        else:
            raise InputError(f"unknown reward {name!r}: use {', '.join(REWARDS)} or a dotted import path")
    return funcs
