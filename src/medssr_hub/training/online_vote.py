"""The online majority-vote reward (TTRL, PRIME-RL/TTRL): at every step, the majority of each GRPO group's
own answers is that group's label (`target: vote`).

Each completion is read once, by the reward's `extraction` (the rule offline pseudo-labels are read by, with
the recovery pass when `recovery` is on): that letter is its vote, counted by the offline labels'
`majority_vote`, and the letter the accuracy reward compares with the label. A group with no letter, or a
tie at the top, has no majority: all its completions earn 0, and such groups are counted.

A group is `num_generations` consecutive completions of the global batch, as TRL forms groups for the
advantages. With several processes a group can span ranks (per-device batch smaller than the group), so the
letters are gathered from every process before voting: each prompt's vote sees all of its completions.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from accelerate import PartialState
from accelerate.utils import gather_object

from medssr_hub.answers import Extraction
from medssr_hub.training.rewards import (
    OFFICIAL,
    AccuracyReward,
    PolicyRecovery,
    completion_text,
    trace_batch,
)
from medssr_hub.voting import majority_vote

# A folder: each process appends, per step, the groups it voted on and its own completions' (id, letter,
# recovered, reward) (`rank-<RANK>.jsonl`), to check that votes are per prompt across processes (diagnostics).
TRACE_ENV = "MEDSSR_TRACE_VOTES"


@dataclass(frozen=True)
class GroupVote:
    id: str
    letters: list[str | None]  # every completion's vote, all processes, in global order
    preds: list[str | None]  # the same completions' letters by the reward's rule
    label: str | None  # None: no majority (no letter, or a tie at the top)
    key: str  # the construction key, '' when the question has none

    def reward_hits(self) -> list[bool]:
        """TTRL's reward accuracy: per completion, whether the vote rewards it as the key would."""
        return [(p is not None and p == self.label) == (p == self.key) for p in self.preds]


def group_votes(everyone: list[tuple[str, str | None, str | None, str]], size: int) -> list[GroupVote]:
    """Consecutive runs of `size` (id, vote, pred, key) rows are one group each; a run mixing prompts is an
    error (TRL's sampler repeats each prompt `num_generations` times in a row)."""
    if len(everyone) % size:
        raise RuntimeError(f"{len(everyone)} completions do not split into groups of {size}")
    groups = []
    for start in range(0, len(everyone), size):
        rows = everyone[start : start + size]
        ids = {row[0] for row in rows}
        if len(ids) != 1:
            raise RuntimeError(f"a group of {size} completions mixes prompts {sorted(ids)}")
        vote = majority_vote([row[1] for row in rows])
        label = None if vote.tie else vote.label
        groups.append(GroupVote(rows[0][0], [r[1] for r in rows], [r[2] for r in rows], label, rows[0][3]))
    return groups


class OnlineVoteReward(AccuracyReward):
    """Accuracy against the group's own online majority (see the module docstring)."""

    __name__ = "accuracy"  # the same column in the logs as the offline accuracy reward

    def __init__(
        self,
        num_generations: int,
        recovery: PolicyRecovery | None = None,
        recovered_credit: float = 0.0,
        extraction: Extraction = OFFICIAL,
    ):
        super().__init__(recovery, recovered_credit, extraction)
        self.num_generations = num_generations

    def __call__(
        self, prompts, completions, letters, key=None, record=None, log_metric=None, id=None, **kwargs
    ):
        trace_batch(id, kwargs.get("trainer_state"))
        n = len(completions)
        ids = list(id) if id is not None else [str(p) for p in prompts]
        keys = list(key) if key is not None else [""] * n
        texts = [completion_text(c) for c in completions]
        preds, recovered, missed = self.read(texts, letters, record)
        votes = preds  # one reading: a completion votes for the letter it is rewarded for

        state = PartialState()
        local = list(zip(ids, votes, preds, keys, strict=True))
        everyone = gather_object(local) if state.num_processes > 1 else local
        if len(everyone) != n * state.num_processes:
            raise RuntimeError("the processes hold batches of different sizes: cannot place the groups")
        groups = group_votes(everyone, self.num_generations)
        offset = state.process_index * n
        labels = [groups[(offset + i) // self.num_generations].label for i in range(n)]
        rewards = self.score(preds, recovered, labels)

        if log_metric is not None:  # global values (the same on every process), so TRL's mean keeps them
            log_metric("medssr/parse_rate", (n - missed) / n)
            log_metric("medssr/recovery_rate", sum(recovered) / n)
            log_metric("medssr/vote_groups", len(groups))
            log_metric("medssr/vote_no_majority", sum(g.label is None for g in groups))
            voted = [g for g in groups if g.label is not None]
            if voted:
                agreement = sum(g.letters.count(g.label) / len(g.letters) for g in voted) / len(voted)
                log_metric("medssr/vote_agreement", agreement)
            keyed = [g for g in groups if g.key]
            if keyed:
                # TTRL's two diagnostics: is the voted label the key; does the vote reward each completion as
                # the key would (1 where both agree on right or wrong)
                log_metric("medssr/label_accuracy", sum(g.label == g.key for g in keyed) / len(keyed))
                hits = [hit for g in keyed for hit in g.reward_hits()]
                log_metric("medssr/reward_accuracy", sum(hits) / len(hits))
        trace_votes(
            kwargs.get("trainer_state"), groups, list(zip(ids, preds, recovered, rewards, strict=True))
        )
        return rewards


def trace_votes(trainer_state, groups: list[GroupVote], local: list) -> None:
    folder = os.environ.get(TRACE_ENV)
    if not folder:
        return
    Path(folder).mkdir(parents=True, exist_ok=True)
    row = {
        "step": getattr(trainer_state, "global_step", None),
        "groups": [{"id": g.id, "letters": g.letters, "label": g.label} for g in groups],
        "local": local,
    }
    with (Path(folder) / f"rank-{os.environ.get('RANK', '0')}.jsonl").open("a") as f:
        f.write(json.dumps(row) + "\n")
