"""Pseudo-labeling with the real embedded policy: votes, band, diagnostics, resume, faults, Hub I/O."""

import json

import pandas as pd
import pytest
from datasets import load_dataset

from medssr_hub.errors import ConfigError
from medssr_hub.generation import GenerationError
from medssr_hub.hub import LocalHub
from medssr_hub.labeling.diagnostics import VotedQuestion, accuracy_vs_n, compute_diagnostics
from medssr_hub.labeling.label import LabelConfig, Labeler, LabelingError
from medssr_hub.records import MCQRecord, RecordFormatError, load_records
from medssr_hub.schema import LABELED_FEATURES
from medssr_hub.voting import majority_vote
from tests.support.data import publish_vignettes


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """Six catalogue vignettes (keys known by construction), published to a local hub as v1.0.0."""
    return publish_vignettes(tmp_path_factory.mktemp("synthetic"))


def config(tmp_path, hub, **kw):
    base = {
        "input": "medssr/synth",
        "input_revision": "v1.0.0",
        "chat": True,
        "hub": str(hub),
        "n": 4,
        "max_tokens": 40,
        "shard_size": 2,
        "output_dir": str(tmp_path / "labels"),
    }
    return LabelConfig(**{**base, **kw})


def table(folder, split="train"):
    path = folder / "dataset" / "data" / f"{split}-00000.parquet"
    return pd.read_parquet(path) if path.exists() else pd.DataFrame()


def test_a_run_that_keeps_no_question_publishes_nothing_and_says_why(tmp_path, synthetic, embedded_dir):
    """band [0, 0] keeps no question that has a label: the stats and plot are written for a look, and the
    publish is refused in one line naming the band (not a card error about a missing split)."""
    cfg = config(tmp_path, synthetic, n=2, max_tokens=8, band=[0.0, 0.0], publish_repo="medssr/none-kept")
    with pytest.raises(ConfigError, match=r"labeling kept none of 6 questions in band \[0.0, 0.0\]"):
        Labeler(cfg).run()
    assert json.loads((tmp_path / "labels" / "dataset" / "stats.json").read_text())["kept"] == 0
    assert LocalHub(synthetic).versions("medssr/none-kept") == {}


@pytest.mark.slow
def test_labels_votes_band_and_diagnostics(tmp_path, synthetic, embedded_dir):
    cfg = config(tmp_path, synthetic, band=[0.5, 0.75], publish_repo="medssr/synth-labeled")
    stats = Labeler(cfg).run()
    labeled = pd.concat([table(tmp_path / "labels"), table(tmp_path / "labels", "discarded")])
    assert len(labeled) == 6 == stats["questions"]
    for row in labeled.itertuples():
        assert len(row.votes) == 4 and len(row.recovered) == 4
        vote = majority_vote(list(row.votes))
        assert (row.label, row.agreement) == (vote.label, vote.agreement)
    kept = table(tmp_path / "labels")
    assert kept.empty or kept["agreement"].between(0.5, 0.75).all()
    assert stats["kept"] == len(kept) and stats["kept"] + stats["discarded"] == 6
    bands = stats["band_counts"]
    assert bands["in_band"] == stats["kept"]
    assert bands["below_band"] + bands["in_band"] + bands["above_band"] == 6
    assert stats["reference_questions"] == 6 and 0 <= stats["label_accuracy"] <= 1
    assert set(stats["label_accuracy_vs_n"]) == {"1", "2", "3", "4"}
    assert sum(stats["agreement_histogram"].values()) == 6
    assert (tmp_path / "labels" / "dataset" / "plots" / "labeling.png").read_bytes()[
        :8
    ] == b"\x89PNG\r\n\x1a\n"
    # Published as a new dataset version with its card; the next stage reads it by revision.
    folder = LocalHub(synthetic).pull("medssr/synth-labeled", "v0.1.0")
    card = (folder / "README.md").read_text()
    assert (
        "| samples per question (n) | 4 |" in card
        and "label accuracy" in card
        and "plots/labeling.png" in card
    )
    if stats["kept"]:
        records, _ = load_records(
            "medssr/synth-labeled", revision="v0.1.0", split="train", hub=str(synthetic)
        )
        assert {r.columns["label"] for r in records} <= set("ABCDE")
        assert all(r.key is not None and r.columns["rare"] for r in records)  # synthetic columns carried
    # The published repo loads with plain `datasets` to exactly the labeled schema.
    assert (
        load_dataset(str(folder), split="discarded" if not stats["kept"] else "train").features
        == LABELED_FEATURES
    )


@pytest.mark.slow
def test_interrupted_labeling_resumes_without_resampling(tmp_path, synthetic, embedded_dir):
    Labeler(config(tmp_path / "a", synthetic)).run()

    class Interrupted(Labeler):
        calls = 0

        def vote(self, chunk):
            Interrupted.calls += 1
            if Interrupted.calls == 2:
                raise KeyboardInterrupt
            return super().vote(chunk)

    cut = config(tmp_path / "b", synthetic)
    with pytest.raises(KeyboardInterrupt):
        Interrupted(cut).run()
    assert [p.name for p in sorted((tmp_path / "b" / "labels" / "shards").iterdir())] == ["votes-00000.jsonl"]

    class Counting(Labeler):
        calls = 0

        def vote(self, chunk):
            Counting.calls += 1
            return super().vote(chunk)

    Counting(cut).run()
    assert Counting.calls == 2  # shards 1 and 2 only: shard 0 was not sampled again
    for split in ("train", "discarded"):
        a, b = table(tmp_path / "a" / "labels", split), table(tmp_path / "b" / "labels", split)
        pd.testing.assert_frame_equal(a, b)


@pytest.mark.slow
def test_backend_failure_keeps_finished_shards(tmp_path, synthetic, embedded_dir):
    labeler = Labeler(config(tmp_path, synthetic))
    real = labeler.backend.generate
    calls = {"n": 0}

    def flaky(prompts, params, **kw):
        calls["n"] += 1
        if params.n > 1 and calls["n"] > 2:
            raise GenerationError("endpoint http://127.0.0.1:9 failed after 5 attempt(s): ConnectError")
        return real(prompts, params, **kw)

    labeler.backend.generate = flaky
    with pytest.raises(
        LabelingError, match=r"failed on shard \d of 3.*finished shards are kept.*rerun to resume"
    ):
        labeler.run()
    assert len(list((tmp_path / "labels" / "shards").iterdir())) >= 1


@pytest.mark.slow
def test_empty_policy_answers_go_through_recovery(tmp_path, synthetic, embedded_dir):
    labeler = Labeler(config(tmp_path, synthetic, shard_size=6))
    real = labeler.backend.generate

    def silent_sampler(prompts, params, **kw):
        out = real(prompts, params, **kw)
        if params.n > 1:  # the voting pass answers nothing; the constrained recovery pass is real
            for completion in out:
                for sample in completion.samples:
                    sample.text = ""
        return out

    labeler.backend.generate = silent_sampler
    stats = labeler.run()
    assert stats["recovery_rate"] == 1.0 and stats["band_counts"]["no_vote"] == 0
    assert stats["unparsed_rate"] == 0.0


def test_bad_input_is_refused_clearly(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": "x", "question": "no options at all"}) + "\n")
    with pytest.raises(RecordFormatError, match="no usable question"):
        Labeler(LabelConfig(input=str(bad), chat=True, output_dir=str(tmp_path / "o"))).run()
    with pytest.raises(FileNotFoundError):
        Labeler(
            LabelConfig(input=str(tmp_path / "missing.jsonl"), chat=True, output_dir=str(tmp_path / "p"))
        ).run()
    with pytest.raises(ConfigError, match="band"):
        LabelConfig(chat=True, band=[0.9, 0.2])
    with pytest.raises(ConfigError, match="chat"):
        LabelConfig(model="org/another-model")  # any model but the embedded default needs `chat` set
    with pytest.raises(ConfigError, match="chat"):
        LabelConfig(backend="endpoint", endpoint={"base_url": "http://127.0.0.1:9"})  # what a server serves
    assert LabelConfig().chat is True  # the embedded default carries its own (an instruct model)


def test_diagnostics_on_known_votes():
    cfg = LabelConfig(n=4, chat=True, band=[0.5, 0.75], reference="all")
    records = [
        MCQRecord(id=str(i), question="Q?", options={"A": "a", "B": "b", "C": "c"}, answer="A")
        for i in range(3)
    ]
    votes = [["A", "A", "A", "B"], ["B", "B", "A", None], ["A", "A", "A", "A"]]
    rows = []
    for record, letters in zip(records, votes, strict=True):
        vote = majority_vote(letters)
        rows.append(VotedQuestion(record, letters, [False] * 4, vote, 0.5 <= vote.agreement <= 0.75))
    d = compute_diagnostics(rows, cfg)
    assert d["label_accuracy"] == pytest.approx(2 / 3)
    assert d["sample_accuracy"] == pytest.approx(8 / 12)
    assert d["band_counts"] == {"below_band": 0, "in_band": 2, "above_band": 1, "no_vote": 0}
    assert d["agreement_histogram"] == {"0/4": 0, "1/4": 0, "2/4": 1, "3/4": 1, "4/4": 1}
    # reward accuracy: sample-level agreement of (x == label) with (x == gold); question 2 gets 3 of 4 wrong
    assert d["reward_accuracy"] == pytest.approx((4 + 1 + 4) / 12)
    curve = accuracy_vs_n([(q, "A") for q in rows], 4, seed=0)
    assert curve["4"] == pytest.approx(2 / 3) and set(curve) == {"1", "2", "3", "4"}


def test_cards_name_the_model_never_a_server_url():
    from medssr_hub.generation import stage_model_id

    url = {"base_url": "http://127.0.0.1:8000"}
    assert stage_model_id("embedded", "embedded", {}) == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert stage_model_id("endpoint", "embedded", {**url, "model": "Qwen/Qwen3-8B"}) == "Qwen/Qwen3-8B"
    assert stage_model_id("endpoint", "embedded", url, served="served/model") == "served/model"
    assert stage_model_id("endpoint", "embedded", {**url, "tokenizer": "org/tok"}) == "org/tok"
    assert stage_model_id("endpoint", "org/policy", url) == "org/policy"
    assert "127.0.0.1" not in stage_model_id("endpoint", "embedded", url)
    # A vLLM server started on a folder names the model by its path: cards get the folder's name only.
    served = "/home/me/models/SmolLM2-135M-Instruct"
    assert stage_model_id("endpoint", "embedded", url, served=served) == "SmolLM2-135M-Instruct"
    assert stage_model_id("vllm", "/home/me/ckpt/final", {}) == "final"


def test_one_name_per_model_concept(tmp_path):
    """Issue 23: the model a stage runs (`model`), the string the official rules read (`path_string`: the
    whole path, where the script matches family names), the id in cards (`model_id`: never a local path),
    and the name in tables (`display_name`: a local folder by its name)."""
    from medssr_hub.evaluation.config import EvalConfig
    from medssr_hub.modeling import model_id, path_string

    folder = tmp_path / "Qwen3-8B-run" / "final"
    folder.mkdir(parents=True)
    assert path_string("embedded") == model_id("embedded") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert path_string(str(folder)) == str(folder) and "qwen3" in path_string(str(folder)).lower()
    assert model_id(str(folder)) == "final" and model_id("Qwen/Qwen3-8B") == "Qwen/Qwen3-8B"
    cfg = EvalConfig(model=str(folder), chat=True)
    assert cfg.display_name == "final" and cfg.path_string == str(folder)
    assert EvalConfig(model="org/m", model_revision="v1", chat=True).display_name == "org/m@v1"
    assert EvalConfig(model="org/m", display_name="mine", chat=True).display_name == "mine"


def test_published_configs_mask_server_addresses_and_local_paths():
    from medssr_hub.published import publishable

    config = {
        "endpoint": {"base_url": ["http://10.0.0.5:8000", "http://10.0.0.6:8000"], "route": "completions"},
        "model": "/home/me/ckpt",
        "output_dir": "outputs/x",
        "n": 8,
    }
    assert publishable(config) == {
        "endpoint": {"base_url": "<server>", "route": "completions"},
        "model": "<local path>",
        "n": 8,
    }


@pytest.mark.slow
def test_base_template_votes_stop_where_training_rollouts_stop(tmp_path, synthetic, embedded_backend):
    """chat: false, the embedded model: votes that go on to a question of their own are cut at its
    "\\nQuestion:" (the stop training rollouts use), so the vote reads the answer to the question asked.
    The same prompts and seeds without the stop write such questions."""
    from medssr_hub.answers import answer_prompt
    from medssr_hub.generation import SamplingParams
    from medssr_hub.labeling.label import question_seed

    cfg = config(tmp_path, synthetic, chat=False, max_tokens=64, band=[0.0, 1.0])
    labeler = Labeler(cfg)
    labeler.run()
    stopped = {json.loads(line)["id"]: json.loads(line)["texts"]
               for f in sorted((tmp_path / "labels" / "shards").glob("*.jsonl")) for line in f.read_text().splitlines()}  # fmt: skip
    assert not any("\nQuestion:" in t for texts in stopped.values() for t in texts)
    # One reading: a vote's letter is what the evaluation's official rule (the rewards' default) reads; the
    # rest came from the official recovery pass for the model's family (Llama: letter and "X." ids).
    reading = labeler.reading()
    assert (reading.mode, reading.model_type) == ("official", "llama")
    rows = [json.loads(line) for f in sorted((tmp_path / "labels" / "shards").glob("*.jsonl"))
            for line in f.read_text().splitlines()]  # fmt: skip
    for row in rows:
        for text, letter, recovered in zip(row["texts"], row["letters"], row["recovered"], strict=True):
            assert recovered or letter == reading.first_pass(text, "ABCDE"), (text, letter)
    records = labeler.load()
    free = embedded_backend.generate(
        [answer_prompt(r, chat=False) for r in records],
        SamplingParams(n=cfg.n, temperature=cfg.temperature, top_p=cfg.top_p, top_k=cfg.top_k,
                       max_tokens=cfg.max_tokens, seed=cfg.seed),
        seeds=[question_seed(cfg.seed, r.id) for r in records], progress=False,
    )  # fmt: skip
    pairs = [
        (a, b)
        for r, c in zip(records, free, strict=True)
        for a, b in zip(c.texts, stopped[r.id], strict=True)
    ]
    went_on = [(a, b) for a, b in pairs if "\nQuestion:" in a]
    assert went_on  # the base model writes its own next question (2 of 24 here)
    assert all(
        a.startswith(b) and a[len(b) :].startswith("\nQuestion:") for a, b in went_on
    )  # cut right there
    assert all(a == b for a, b in pairs if "\nQuestion:" not in a)  # the others are untouched
