"""The online majority-vote reward (`target: vote`, TTRL) on hand-worked groups; its 2-process run is in
test_training.py (`test_online_votes_are_per_prompt_across_two_processes`)."""

import pytest

from medssr_hub.records import MCQRecord
from medssr_hub.training.args import MedSSRScriptArguments
from medssr_hub.training.data import target_of
from medssr_hub.training.online_vote import OnlineVoteReward, group_votes
from medssr_hub.training.reward_registry import build_reward_funcs
from medssr_hub.training.rewards import AccuracyReward

LETTERS = ["A", "B", "C", "D"]
# Two groups of 4, read by one rule (the reward's, official by default). q1 (key B): votes B, B, - ("Answer: C"
# is not the official form), A -> label B. q2 (key C): votes C, D, -, - -> a tie: no majority, no reward.
COMPLETIONS = [
    "Reasoning. The answer is B.",
    "The answer is B.",
    "Answer: C",
    "The answer is A.",
    "The answer is C.",
    "The answer is D.",
    "no letter",
    "nothing either",
]


def test_each_group_is_rewarded_against_its_own_majority_and_ties_earn_nothing():
    metrics = {}
    reward = OnlineVoteReward(num_generations=4)
    rewards = reward(
        prompts=["p1"] * 4 + ["p2"] * 4,
        completions=[[{"role": "assistant", "content": c}] for c in COMPLETIONS],
        letters=[LETTERS] * 8,
        key=["B"] * 4 + ["C"] * 4,
        id=["q1"] * 4 + ["q2"] * 4,
        log_metric=lambda name, value: metrics.setdefault(name, value),
    )
    assert rewards == [1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    assert metrics["medssr/vote_groups"] == 2 and metrics["medssr/vote_no_majority"] == 1
    assert metrics["medssr/vote_agreement"] == 0.5  # q1: 2 of 4 votes for B
    # q1's label is its key, q2 has none: 1 of 2. The reward disagrees with the key's only on q2's "C".
    assert metrics["medssr/label_accuracy"] == 0.5
    assert metrics["medssr/reward_accuracy"] == 7 / 8
    assert metrics["medssr/parse_rate"] == 5 / 8  # the official reading misses "Answer: C"


def test_groups_follow_the_global_order_and_never_mix_prompts():
    rows = [("q1", "A", "A", "A"), ("q1", "A", None, "A"), ("q2", "B", "B", ""), ("q2", None, None, "")]
    groups = group_votes(rows, 2)
    assert [(g.id, g.label, g.letters) for g in groups] == [("q1", "A", ["A", "A"]), ("q2", "B", ["B", None])]
    with pytest.raises(RuntimeError, match="mixes prompts"):
        group_votes(rows, 4)
    with pytest.raises(RuntimeError, match="groups of 3"):
        group_votes(rows, 3)


def test_targets_select_the_reward():
    record = MCQRecord(id="q", question="Q?", options={"A": "x", "B": "y"}, answer="A", columns={"key": "B"})
    assert [target_of(record, t) for t in ("answer", "key", "vote")] == ["A", "B", ""]
    vote = MedSSRScriptArguments(dataset_name="x.json", chat=True, target="vote")
    (accuracy,) = build_reward_funcs(["accuracy"], vote, max_completion_length=64, num_generations=8)
    assert isinstance(accuracy, OnlineVoteReward) and accuracy.num_generations == 8
    oracle = MedSSRScriptArguments(dataset_name="x.json", chat=True, target="key")
    (accuracy,) = build_reward_funcs(["accuracy"], oracle, max_completion_length=64)
    assert type(accuracy) is AccuracyReward
    with pytest.raises(ValueError, match="target must be one of label, answer, vote, key"):
        MedSSRScriptArguments(dataset_name="x.json", chat=True, target="gold")
