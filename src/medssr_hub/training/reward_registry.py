"""The reward registry (by name, as open-r1 does): `accuracy` (against the offline pseudo-label, gold or the
construction key; with `target: vote` against each group's online majority), `format`, `length` (TRL's DAPO
soft overlong punishment), or any reward function by dotted import path."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence

from medssr_hub.answers import Extraction
from medssr_hub.errors import InputError
from medssr_hub.training.online_vote import OnlineVoteReward
from medssr_hub.training.rewards import AccuracyReward, PolicyRecovery, format_reward


def build_reward_funcs(
    names: Sequence[str], args, max_completion_length: int, path_string: str = "", num_generations: int = 1
) -> list[Callable]:
    """Reward callables by registry name or dotted import path (`my_pkg.rewards.fn`). `path_string` is the
    policy's id, which `recovery_rule: script_path_string` matches families in. With `target: vote` the
    accuracy reward votes online within each group of `num_generations` (`training.online_vote`)."""
    from trl.rewards import get_soft_overlong_punishment

    funcs = []
    for name in names:
        if name == "accuracy":
            extraction = Extraction(args.extraction, path_string, recovery_rule=args.recovery_rule)
            recovery = PolicyRecovery(chat=args.chat, extraction=extraction) if args.recovery else None
            if args.target == "vote":
                funcs.append(OnlineVoteReward(num_generations, recovery, args.recovered_credit, extraction))
            else:
                funcs.append(AccuracyReward(recovery, args.recovered_credit, extraction))
        elif name == "format":
            funcs.append(format_reward)
        elif name == "length":
            # TRL's DAPO soft overlong punishment: 0 until `length_cache` tokens before the limit.
            length = get_soft_overlong_punishment(
                max_completion_length, min(args.length_cache, max_completion_length)
            )
            length.__name__ = "length"
            funcs.append(length)
        elif "." in name:
            module, attr = name.rsplit(".", 1)
            funcs.append(getattr(importlib.import_module(module), attr))
        else:
            raise InputError(f"unknown reward {name!r}: use accuracy, format, length or a dotted import path")
    return funcs
