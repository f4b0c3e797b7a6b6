import json

import pytest

from medssr_hub.answers import (
    Answer,
    answer_prompt,
    extract_answer,
    extract_or_recover,
    recovery_prompt,
)
from medssr_hub.labeling import majority_vote
from tests.support.paths import DATA

ABCD = "ABCD"

FORMATS = [
    ("The answer is C", ABCD, "C"),
    ("The answer is C.", ABCD, "C"),
    ("so the answer is: B", ABCD, "B"),
    ("The answer is **D**.", ABCD, "D"),
    ("**The answer is B**", ABCD, "B"),
    ("The answer is $\\boxed{A}$", ABCD, "A"),
    ("Final: \\boxed{C}", ABCD, "C"),
    ("The answer is \\boxed{\\text{D}}", ABCD, "D"),
    ("The answer is [B].", ABCD, "B"),
    ("The answer is (A)", ABCD, "A"),
    ("Answer: D", ABCD, "D"),
    ("**Answer:** C", ABCD, "C"),
    ("The correct answer is B. Because...", ABCD, "B"),
    ("The final answer is option C", ABCD, "C"),
    ("THE ANSWER IS A", ABCD, "A"),
    # last match wins: models revise themselves
    ("The answer is A. Wait, no. The answer is C.", ABCD, "C"),
    # letters the question does not offer are ignored
    ("The answer is E", ABCD, None),
    ("The answer is E. Hmm, the answer is B", "ABCDE", "B"),
    ("The answer is C. Actually the answer is E.", ABCD, "C"),
    ("The answer is B", "AB", "B"),
    # not an answer letter
    ("The answer is Aspirin.", ABCD, None),
    ("The answer is a tricky one", ABCD, None),
    ("The answer is not clear", ABCD, None),
    ("I think C is right", ABCD, None),
    ("", ABCD, None),
    (None, ABCD, None),
]


@pytest.mark.parametrize(("text", "letters", "expected"), FORMATS)
def test_answer_formats(text, letters, expected):
    assert extract_answer(text, list(letters)) == expected


def real_outputs():
    with (DATA / "smollm2_outputs.jsonl").open() as f:
        return [json.loads(line) for line in f]


@pytest.mark.parametrize("row", real_outputs(), ids=lambda r: f"{r['id']}#{r['sample']}")
def test_real_smollm2_outputs(row):
    """SmolLM2-135M outputs on the shared benchmarks, each read by hand for the letter it commits to."""
    assert extract_answer(row["text"], list(row["letters"])) == row["expected"]


def test_prompts_follow_the_official_protocol(benchmarks_dir):
    from medssr_hub.records import load_records

    record = load_records(benchmarks_dir / "pubmedqa.json")[0][0]
    chat = answer_prompt(record, chat=True)
    assert chat[0] == {
        "role": "system",
        "content": "Please think step by step and output the final answer as 'The answer is [LETTER]'.",
    }
    assert chat[1]["content"].endswith("A. yes\nB. no\nC. maybe")
    base = answer_prompt(record, chat=False)
    assert base.startswith("You are a professional medical expert") and "Question:\n" in base
    rec = recovery_prompt(record, "Some reasoning", chat=False)
    assert rec.endswith("Some reasoning.\nRespond with one option only.\nThe answer is ")
    rec_chat = recovery_prompt(record, "Some reasoning", chat=True)
    assert rec_chat[-2] == {"role": "assistant", "content": "Some reasoning"}
    assert rec_chat[-1]["content"] == "Respond with one option only. The answer is "


def test_recovery_pass_with_the_real_model(benchmarks_dir, embedded_backend):
    """Unparseable answers get a letter from the constrained greedy pass, always one that is offered."""
    from medssr_hub.records import load_records

    outputs = [r for r in real_outputs() if r["expected"] is None]
    records = {}
    for name in ("bioasq", "medbullets", "medmcqa", "medqa", "mmlu", "pubmedqa"):
        records.update({r.id: r for r in load_records(benchmarks_dir / f"{name}.json")[0]})
    chosen = [records[o["id"]] for o in outputs]
    parsed = "The reasoning... The answer is " + chosen[0].letters[-1]
    generations = [[o["text"]] for o in outputs]
    generations[0] = [outputs[0]["text"], parsed]
    answers = extract_or_recover(chosen, generations, embedded_backend)
    assert answers[0][1] == Answer(chosen[0].letters[-1], recovered=False)
    for record, row in zip(chosen, answers, strict=True):
        assert row[0].recovered
        assert row[0].letter in record.letters
    # Greedy: the same inputs recover the same letters.
    again = extract_or_recover(chosen, generations, embedded_backend)
    assert again == answers
    # Base-model prompts take the same path.
    base = extract_or_recover(chosen[:2], generations[:2], embedded_backend, chat=False)
    assert all(a[0].recovered and a[0].letter in r.letters for r, a in zip(chosen[:2], base, strict=True))
    # Without a backend, unparseable answers stay unanswered.
    assert extract_or_recover(chosen[:1], generations[:1], None)[0][0] == Answer(None)


@pytest.mark.parametrize(
    ("letters", "label", "count", "tie"),
    [
        (["A", "B", "A", None], "A", 2, False),
        (["B", "A", "A", "B"], "B", 2, True),
        ([None, None], None, 0, False),
        (["C"] * 8, "C", 8, False),
    ],
)
def test_majority_vote(letters, label, count, tie):
    vote = majority_vote(letters)
    assert (vote.label, vote.count, vote.tie, vote.n) == (label, count, tie, len(letters))
    assert vote.agreement == pytest.approx(count / len(letters))


def test_every_stage_reads_answers_by_one_rule_set_in_one_place():
    """Labeling votes, the online vote, the accuracy reward and the evaluation default to `answers.READING`
    (the official rule), so a pseudo-label and the rollout compared with it are read alike."""
    from medssr_hub.answers import READING
    from medssr_hub.evaluation.config import EvalConfig
    from medssr_hub.labeling.label import LabelConfig
    from medssr_hub.training.args import MedSSRScriptArguments
    from medssr_hub.training.online_vote import OnlineVoteReward

    assert READING == "official"
    assert LabelConfig().extraction == EvalConfig().extraction == READING
    assert MedSSRScriptArguments(dataset_name="q.jsonl", chat=False).extraction == READING
    assert OnlineVoteReward(num_generations=2).extraction.mode == READING
