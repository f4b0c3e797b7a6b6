"""Synthesis: parsing generator output, filters, the rho < alpha ratio, budgets, resume, publishing."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from datasets import load_dataset

from medssr_hub.cli import main
from medssr_hub.decontamination import Decontaminator
from medssr_hub.hub import LocalHub, VersionExistsError
from medssr_hub.records import MCQRecord, load_records
from medssr_hub.schema import SYNTHETIC_FEATURES
from medssr_hub.synthesis.config import SynthesisConfig, SynthesisError, draw_rhos
from medssr_hub.synthesis.filters import Deduplicator, similarity, validate
from medssr_hub.synthesis.prompts import ParseError, key_prompt, parse_generated
from medssr_hub.synthesis.synthesize import Synthesizer, run_synthesis
from tests.support.fault_proxy import FaultProxy

GOOD = " A 30-year-old man has fever and a rash.\nA. Measles\nB. Rubella\nC. Roseola\nD. Scarlet fever\nAnswer: A"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (GOOD, ("A 30-year-old man has fever and a rash.", "ABCD", "A")),
        (
            "Question: Which vitamin?\nA) Vitamin C\nB) Vitamin D\nC) Vitamin K\nD) Niacin\n**Answer:** C",
            ("Which vitamin?", "ABCD", "C"),
        ),
        (
            "Which nerve?\n(A) Ulnar\n(B) Radial\n(C) Median\n(D) Axillary\n(E) Musculocutaneous\nCorrect answer: E",
            ("Which nerve?", "ABCDE", "E"),
        ),
        (
            '{"question": "Which organ?", "options": ["Liver", "Spleen", "Heart", "Lung"], "answer": "b"}',
            ("Which organ?", "ABCD", "B"),
        ),
    ],
)
def test_parse_generated(text, expected):
    stem, options, answer = parse_generated(text)
    assert (stem, "".join(options), answer) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty_generation"),
        ("I am sorry, I cannot write a question.", "no_options"),
        ("Why?\nA. x\nC. y\nB. z\nAnswer: A", "options_out_of_order"),
        ("Why?\nA. x\nA. y\nAnswer: A", "duplicate_letters"),
        ('{"question": "Which?", "options": ', "invalid_json"),
        ('{"question": "Which?"}', "json_missing_fields"),
        ("A. x\nB. y\nAnswer: A", "no_stem"),
    ],
)
def test_parse_rejections_have_reasons(text, reason):
    assert parse_generated("Why?\nA. x\nB. y\nC. z", prefilled=False) == (
        "Why?",
        {"A": "x", "B": "y", "C": "z"},
        None,
    )
    with pytest.raises(ParseError) as info:
        parse_generated(text, prefilled=False)
    assert info.value.reason == reason


def record(question, options, answer="A", rid="q"):
    return MCQRecord(
        id=rid, question=question, options=dict(zip("ABCDE", options, strict=False)), answer=answer
    )


def test_validation_dedup_and_decontamination(benchmarks_dir):
    ok = record("A 4-year-old boy has recurrent infections and eczema.", ["WAS", "BTK", "ADA", "CD40L"])
    assert validate(ok) is None
    assert validate(record("Short stem here, fine?", ["a", "b", "c"])) == "wrong_option_count"
    assert validate(record("A long enough question stem?", ["x", "X", "y", "z"])) == "duplicate_options"
    assert (
        validate(record("Which is it? Marfan syndrome is likely here.", ["Marfan syndrome", "b", "c", "d"]))
        == "answer_in_stem"
    )
    assert validate(record("Tiny?", ["a", "b", "c", "d"])) == "bad_stem_length"
    assert (
        validate(record("A long enough question stem?", ["a", "b", "c", "d"], answer="E"))
        == "answer_not_in_options"
    )

    dedup = Deduplicator(0.8)
    assert dedup.check_and_add(ok) is None
    assert dedup.check_and_add(ok) == "duplicate"
    near = record(
        "A 4-year-old boy has recurrent infections and eczema today.", ["WAS", "BTK", "ADA", "CD40L"]
    )
    assert dedup.check_and_add(near) == "near_duplicate"
    assert (
        dedup.check_and_add(
            record(
                "An adult woman presents with chest pain after a marathon.",
                ["MI", "PE", "GERD", "Costochondritis"],
            )
        )
        is None
    )

    assert (
        similarity(ok.question, near.question)
        > 0.8
        > similarity(ok.question, "An adult woman has chest pain.")
    )
    evals, _ = load_records(benchmarks_dir / "medqa.json")
    decon = Decontaminator(evals[:100])
    copied = evals[5]
    assert (
        decon.check(record("Rephrased: " + copied.question, list(copied.options.values()))) == "contaminated"
    )
    assert decon.check(ok) is None


def test_stratified_draws_are_uniform_and_hit_alpha():
    rhos = draw_rhos(1000, 3)
    assert rhos.min() >= 0 and rhos.max() < 1
    assert sorted((rhos * 10).astype(int).tolist()) == sorted([i // 100 for i in range(1000)])
    for alpha in (0.03, 0.3, 0.77):
        assert abs((rhos < alpha).mean() - alpha) <= 0.001


class PickySynthesizer(Synthesizer):
    """Rejects two thirds of the seed branch's candidates: rejections in one branch only."""

    def run_chunk(self, branch, chunk):
        rows = super().run_chunk(branch, chunk)
        for row in rows:
            if branch == "seed" and row["attempt"] % 3 and row["status"] == "ok":
                row["status"] = "injected_rejection"
        return rows


def vignette_config(tmp_path, **kw):
    base = {
        "rare_generator": "vignette",
        "seed_generator": "vignette",
        "chunk_size": 64,
        "output_dir": str(tmp_path / "out"),
    }
    return SynthesisConfig(**{**base, **kw})


@pytest.mark.parametrize("alpha", [0.03, 0.3])
def test_branch_rejections_do_not_skew_the_rare_ratio(tmp_path, alpha):
    stats = PickySynthesizer(vignette_config(tmp_path, num_questions=400, alpha=alpha)).run()
    assert stats["num_questions"] == 400
    assert abs(stats["rare_ratio"] - alpha) <= 0.02
    assert stats["acceptance"]["seed"] < 0.35 < stats["acceptance"]["rare"]
    assert stats["rejections_by_branch"]["seed"]["injected_rejection"] > 200
    table = pd.read_parquet(tmp_path / "out" / "dataset" / "data" / "train-00000.parquet")
    assert table["rare"].mean() == pytest.approx(stats["rare_ratio"])
    assert (table["rho"] < alpha).tolist() == table["rare"].tolist()
    assert table[table["rare"]]["disease_id"].str.startswith("ORPHA:").all()
    assert (table["key"] == table["answer"]).all()  # vignettes: every answer is a construction key
    rejected = [json.loads(line) for line in (tmp_path / "out" / "dataset" / "rejected.jsonl").open()]
    assert len(rejected) == sum(stats["rejections"].values())


def test_a_branch_that_cannot_fill_its_quota_stops_with_rates(tmp_path):
    class Hopeless(Synthesizer):
        def run_chunk(self, branch, chunk):
            rows = super().run_chunk(branch, chunk)
            for row in rows:
                if branch == "seed":
                    row["status"] = "no_answer"
            return rows

    cfg = vignette_config(tmp_path, num_questions=40, alpha=0.5, chunk_size=16, max_attempts_per_question=2)
    with pytest.raises(
        SynthesisError, match=r"seed branch filled 0 of its 20 questions.*acceptance.*no_answer"
    ):
        Hopeless(cfg).run()


def test_interrupted_run_resumes_to_the_identical_dataset(tmp_path):
    full = vignette_config(tmp_path / "a", num_questions=300, alpha=0.3, chunk_size=16)
    Synthesizer(full).run()

    class Crashes(Synthesizer):
        def run_chunk(self, branch, chunk):
            if branch == "seed" and chunk == 4:
                raise KeyboardInterrupt
            return super().run_chunk(branch, chunk)

    cut = vignette_config(tmp_path / "b", num_questions=300, alpha=0.3, chunk_size=16)
    with pytest.raises(KeyboardInterrupt):
        Crashes(cut).run()
    shards = sorted(p.name for p in (tmp_path / "b" / "out" / "shards").iterdir())
    assert "seed-00003.jsonl" in shards and "seed-00004.jsonl" not in shards
    Synthesizer(cut).run()
    a = pd.read_parquet(tmp_path / "a" / "out" / "dataset" / "data" / "train-00000.parquet")
    b = pd.read_parquet(tmp_path / "b" / "out" / "dataset" / "data" / "train-00000.parquet")
    pd.testing.assert_frame_equal(a, b)
    with pytest.raises(SynthesisError, match="other settings"):
        Synthesizer(vignette_config(tmp_path / "b", num_questions=300, alpha=0.4)).run()


@pytest.mark.slow
def test_killed_run_resumes_to_the_identical_dataset(tmp_path):
    """kill -9 (not an exception): the CLI in a subprocess, killed once a few shards are on disk."""
    config = tmp_path / "c.yaml"
    config.write_text("rare_generator: vignette\nseed_generator: vignette\nchunk_size: 16\n")
    cmd = [sys.executable, "-m", "medssr_hub.cli", "synthesize", "--config", str(config), "--num-questions", "1500",
           "--alpha", "0.3", "--seed", "3"]  # fmt: skip
    subprocess.run([*cmd, "--output_dir", str(tmp_path / "full")], check=True, capture_output=True)
    cut = tmp_path / "cut"
    proc = subprocess.Popen(
        [*cmd, "--output_dir", str(cut)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and len(list((cut / "shards").glob("*.jsonl"))) < 3:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    written = len(list((cut / "shards").glob("*.jsonl")))
    assert written >= 3 and not (cut / "dataset" / "data" / "train-00000.parquet").exists(), "kill mid-run"
    subprocess.run([*cmd, "--output_dir", str(cut)], check=True, capture_output=True)
    data = Path("dataset") / "data" / "train-00000.parquet"
    pd.testing.assert_frame_equal(pd.read_parquet(cut / data), pd.read_parquet(tmp_path / "full" / data))


def test_cli_synthesizes_and_publishes_with_card(tmp_path, monkeypatch):
    config = tmp_path / "c.yaml"
    config.write_text(
        "rare_generator: vignette\nseed_generator: vignette\nchunk_size: 32\n"
        "publish_repo: medssr/synthetic\npublish_version: v1.0.0\n"
    )
    hub = tmp_path / "hub"
    code = main(
        [
            "synthesize",
            "--config",
            str(config),
            "--num-questions",
            "60",
            "--alpha",
            "0.25",
            "--seed",
            "7",
            "--output_dir",
            str(tmp_path / "o"),
            "--hub",
            str(hub),
        ]
    )
    assert code == 0
    folder = LocalHub(hub).pull("medssr/synthetic", "v1.0.0")
    card = (folder / "README.md").read_text()
    assert "| alpha | 0.25 |" in card and "25.0%" in card and "hpo-annotations:2025-01-16" in card
    assert "## Rejections" in card or json.loads((folder / "stats.json").read_text())["rejections"] == {}
    records, report = load_records("medssr/synthetic", revision="v1.0.0", hub=str(hub))
    assert len(records) == 60 and not report.rejected
    assert sum(r.columns["rare"] for r in records) == 15
    assert all(r.columns["disease_id"].startswith("ORPHA:") for r in records if r.columns["rare"])
    # Typed columns, read back by plain `datasets`; no machine-local path in what was published.
    assert load_dataset(str(folder), split="train").features == SYNTHETIC_FEATURES
    assert str(tmp_path) not in card and "output_dir" not in card


KNOWN_STATUSES = {
    "ok",
    "empty_generation",
    "no_stem",
    "no_options",
    "no_answer",
    "options_out_of_order",
    "duplicate_letters",
    "invalid_json",
    "json_missing_fields",
    "wrong_option_count",
    "duplicate_options",
    "bad_option_length",
    "answer_not_in_options",
    "bad_stem_length",
    "answer_in_stem",
    "copies_exemplar",
    "contaminated",
}


@pytest.mark.slow
def test_llm_branches_with_the_embedded_model(tmp_path, embedded_dir):
    """Both branches through SmolLM2: knowledge injected into rare prompts, every outcome counted by reason."""
    cfg = SynthesisConfig(
        num_questions=4,
        alpha=0.5,
        max_tokens=96,
        chunk_size=3,
        batch_size=6,
        output_dir=str(tmp_path / "o"),
        model=str(embedded_dir),
    )
    synth = Synthesizer(cfg)
    rare = synth.run_chunk("rare", 0)
    plan = synth.plan_attempt("rare", 0)
    disease = synth.catalog.by_id[plan.disease_id]
    assert plan.passage_ids[0] == f"card:{disease.id}" and len(plan.passage_ids) == 3
    user = plan.prompt[1]["content"]
    assert (
        disease.name in user and "Background knowledge" in user and plan.prompt[-1]["content"] == "Question:"
    )
    seed = synth.run_chunk("seed", 0)
    for row in rare + seed:
        assert row["status"] in KNOWN_STATUSES, row["status"]
        assert row["raw"] is not None and row["generator"].startswith("llm:")
        if row["status"] == "ok":
            assert validate(_as_record(row)) is None
    assert all(row["seed_ids"] for row in seed) and all(row["disease_id"] for row in rare)
    # Same seed, same attempts: the chunk is reproducible (what makes resume exact).
    again = Synthesizer(SynthesisConfig(**{**cfg.__dict__, "output_dir": str(tmp_path / "p")})).run_chunk(
        "rare", 0
    )
    assert [r["raw"] for r in again] == [r["raw"] for r in rare]


@pytest.mark.server
def test_endpoint_answer_pass_follows_its_generation_and_only_for_screened_questions(llama_server, tmp_path):
    """Through a llama.cpp server: a question written without its answer line gets its answer pass right
    after its own generation (one request slot, so the server still holds the prefix), and only when the
    checks that need no key have passed."""
    proxy = FaultProxy(llama_server.url)
    try:
        cfg = SynthesisConfig(
            num_questions=4,
            alpha=0.0,
            backend="endpoint",
            endpoint={"base_url": proxy.url, "max_concurrency": 1, "tokenizer": "embedded"},
            max_tokens=100,
            chunk_size=8,
            output_dir=str(tmp_path / "o"),
        )
        synth = Synthesizer(cfg)
        rows = synth.run_chunk("seed", 0)
    finally:
        proxy.close()
    bodies = proxy.bodies
    generations = [i for i, b in enumerate(bodies) if b["max_tokens"] == 100]
    assert len(generations) == len(rows) == 8
    expected = []  # attempts whose question parses without a key and passes every key-free check
    for row in rows:
        try:
            stem, options, answer = parse_generated(row["raw"])
        except ParseError:
            continue
        record = MCQRecord(id="x", question=stem, options=options, answer=answer)
        if answer is None and synth._question_reason(record, row["seed_ids"]) is None:
            expected.append(row["attempt"])
    answered = []
    for i, body in enumerate(bodies):
        if body["max_tokens"] != 1:
            continue
        row = rows[generations.index(i - 1)]  # the request just before is this question's generation
        answered.append(row["attempt"])
        plan = synth.plan_attempt("seed", row["attempt"])
        assert body["messages"] == key_prompt(plan.prompt, row["raw"])
        assert (
            row["status"] == "no_answer" or _as_record(row).metadata["answer_source"] == "generator-recovered"
        )
    assert expected, "no question needed an answer pass: the test checks nothing (change max_tokens/seed)"
    assert answered == expected


def _as_record(row):
    from medssr_hub.records import record_from_row

    return record_from_row(row["record"])


def test_rewrite_checks():
    from medssr_hub.synthesis.filters import check_rewrite

    original = record(
        "A 30-year-old woman is evaluated for arachnodactyly, ectopia lentis and tall stature. "
        "Which of the following is the most likely diagnosis?",
        ["Marfan syndrome", "Homocystinuria", "Stickler syndrome", "Ehlers-Danlos syndrome"],
    )
    findings = ["arachnodactyly", "ectopia lentis", "tall stature"]
    good = (
        "A 30-year-old woman of tall stature with arachnodactyly and ectopia lentis comes to clinic. "
        "Which of the following is the most likely diagnosis?"
    )
    assert check_rewrite(original, good, findings) is None
    assert check_rewrite(original, good.rstrip("?"), findings) == "rewrite_no_question"
    assert check_rewrite(original, "Diagnosis?", findings) == "rewrite_length"
    leaked = good.replace("comes to clinic", "has Marfan syndrome")
    assert check_rewrite(original, leaked, findings) == "rewrite_names_an_option"
    dropped = (
        "A 30-year-old woman comes to the clinic because she is worried about her health today. "
        "Which of the following is the most likely diagnosis?"
    )
    assert check_rewrite(original, dropped, findings) == "rewrite_drops_findings"
    looping = good.replace("comes to clinic", "has lens, has lens, has lens, has lens")
    assert check_rewrite(original, looping, findings) == "rewrite_repetitive"
    invented = good.replace(
        "comes to clinic", "shows severe chondral dysplasia, scoliosis, pneumothorax, myopia"
    )
    assert check_rewrite(original, invented, findings) == "rewrite_adds_content"


@pytest.mark.slow
def test_vignette_rewrites_keep_options_and_keys(tmp_path, embedded_dir):
    plain = vignette_config(tmp_path / "plain", num_questions=4, alpha=1.0, chunk_size=4)
    rewritten = vignette_config(
        tmp_path / "rw",
        num_questions=4,
        alpha=1.0,
        chunk_size=4,
        rewrite_vignettes=True,
        max_tokens=120,
        model=str(embedded_dir),
    )
    Synthesizer(plain).run()
    stats = Synthesizer(rewritten).run()
    assert sum(stats["vignette_rewrites"].values()) == 4
    a = pd.read_parquet(tmp_path / "plain" / "out" / "dataset" / "data" / "train-00000.parquet").set_index(
        "id"
    )
    b = pd.read_parquet(tmp_path / "rw" / "out" / "dataset" / "data" / "train-00000.parquet").set_index("id")
    for qid in a.index.intersection(b.index):
        assert (
            list(a.loc[qid, "options"]) == list(b.loc[qid, "options"])
            and a.loc[qid, "answer"] == b.loc[qid, "answer"]
        )
        meta = json.loads(b.loc[qid, "metadata"])
        if meta["rewrite"] == "accepted":
            assert meta["original_stem"] == a.loc[qid, "question"] != b.loc[qid, "question"]
        else:
            assert meta["rewrite"].startswith("rewrite_") and b.loc[qid, "question"] == a.loc[qid, "question"]


def test_published_content_depends_only_on_the_inputs(tmp_path):
    """The same run from two folders publishes one version (the second publish is a no-op); other settings
    under the same version are refused before any work starts, with the fix named."""
    hub = str(tmp_path / "hub")
    settings = {"num_questions": 20, "alpha": 1.0, "publish_repo": "medssr/same", "publish_version": "v1.0.0"}
    first = run_synthesis(vignette_config(tmp_path / "a", hub=hub, **settings))
    second = run_synthesis(vignette_config(tmp_path / "elsewhere" / "b", hub=hub, **settings))
    assert first.published.startswith("medssr/same@v1.0.0") and second.published.startswith(
        "medssr/same@v1.0.0"
    )
    assert first.num_questions == second.num_questions == 20 and first.rare_ratio == 1.0
    assert set(LocalHub(hub).versions("medssr/same")) == {"v1.0.0"}
    assert len(list((tmp_path / "hub" / "datasets" / "medssr" / "same" / "snapshots").iterdir())) == 1
    card = (LocalHub(hub).pull("medssr/same", "v1.0.0") / "README.md").read_text()
    assert str(tmp_path) not in card
    other = vignette_config(tmp_path / "c", hub=hub, **{**settings, "seed": 7})
    with pytest.raises(
        VersionExistsError, match=r"other settings \(seed\).*set publish_version to a new version"
    ):
        run_synthesis(other)
    assert not (tmp_path / "c" / "out" / "shards").exists()  # refused before the work
