"""Evaluation on real parts: the embedded model, the shared benchmark files, lighteval, a Hub over HTTP."""

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from datasets import load_dataset

from medssr_hub.answers import Answer, Extraction, extract_or_recover
from medssr_hub.cli import main
from medssr_hub.evaluation.evaluate import EvalConfig, Evaluator
from medssr_hub.evaluation.registry import (
    BENCHMARKS,
    MMLU_MEDICAL,
    BenchmarkCountMismatch,
    BenchmarkUnavailable,
    load_benchmark,
    locate,
    parse_spec,
)
from medssr_hub.evaluation.runs import Run, load_runs
from medssr_hub.evaluation.scoring import score
from medssr_hub.evaluation.tables import render_csv, render_markdown, table_rows
from medssr_hub.records import MCQRecord, RecordFormatError, load_records
from medssr_hub.resolve import resolve_dataset
from medssr_hub.schema import LEADERBOARD_DETAILS_FEATURES, RESULTS_FEATURES
from tests.support.fake_hub import FakeHub
from tests.support.paths import ROOT

TINY = ["--chat", "true", "--num-samples", "2", "--max-tokens", "16"]


@pytest.fixture(autouse=True)
def benchmarks_env(benchmarks_dir, monkeypatch):
    monkeypatch.setenv("MEDSSR_BENCHMARKS_DIR", str(benchmarks_dir))


class CountingBackend:
    """The real embedded backend, counting the prompts it is asked to generate for."""

    def __init__(self, inner):
        self.inner, self.prompts, self.recoveries = inner, 0, 0
        self.model, self.tokenizer, self.encode = inner.model, inner.tokenizer, inner.encode
        self.identity, self.model_type = inner.identity, inner.model_type

    def generate(self, prompts, params, **kw):
        if params.max_tokens > 2:  # not the 1-2 token recovery pass
            self.prompts += len(prompts)
        else:
            self.recoveries += len(prompts)
        return self.inner.generate(prompts, params, **kw)


# -- registry and scoring (fast) -----------------------------------------------------------------------
def test_registry_knows_ten_benchmarks_and_says_how_to_provide_missing_ones(benchmarks_dir, tmp_path):
    assert (
        parse_spec("all") == [n for n in BENCHMARKS if n != "raredis_catalogue"]
        and len(parse_spec("all")) == 10
    )
    assert BENCHMARKS["raredis_catalogue"].rare and "raredis_catalogue" in parse_spec("raredis_catalogue")
    assert BENCHMARKS["raredis"].hub_id == "tdlhl/RareDis-Sub" and BENCHMARKS["raredis"].rare
    assert locate("medqa") == ("medqa", str(benchmarks_dir / "medqa.json"), None)
    with pytest.raises(
        BenchmarkUnavailable,
        match=r"lancet.json .*\$MEDSSR_BENCHMARKS_DIR.*benchmark_paths: \{lancet: PATH\}",
    ):
        locate("lancet")
    # An extra MCQ file by path, named after its file; a registry name pointed elsewhere by config.
    extra = tmp_path / "mine.json"
    extra.write_text(json.dumps([{"id": "1", "question": "Q?\nA. x\nB. y", "gold": "B"}]))
    name, records, _ = load_benchmark(str(extra))
    assert name == "mine" and records[0].answer == "B"
    assert locate("lancet", {"lancet": str(extra)})[1] == str(extra)
    with pytest.raises(BenchmarkUnavailable, match="neither a benchmark"):
        locate("no-such-bench")


def test_score_is_mean_and_std_over_samples():
    records = [MCQRecord(f"q{i}", "Q?", {"A": "x", "B": "y"}, answer="A") for i in range(4)]
    # sample 0 right on all 4 items, sample 1 right on 2 of 4 (one of them recovered)
    answers = [
        [Answer("A"), Answer("A")],
        [Answer("A"), Answer("A", recovered=True)],
        [Answer("A"), Answer("B")],
        [Answer("A"), Answer(None)],
    ]
    texts = [
        ["The answer is A", "The answer is A."],
        ["The answer is A", "no letter"],
        ["The answer is A", "The answer is B"],
        ["The answer is A", "no letter"],
    ]
    # Through the `medssr_accuracy` metric (generations + recovered answers), and by letters (loglikelihood).
    for extraction in (Extraction("official"), Extraction("lenient"), None):
        metrics, rows = score(records, answers, texts, extraction)
        assert metrics["per_sample"] == [1.0, 0.5] and metrics["mean"] == 0.75 and metrics["std"] == 0.25
        assert metrics["recovery_rate"] == 1 / 8 and metrics["parse_rate"] == 6 / 8
    assert len(rows) == 8 and set(rows[0]) >= {"id", "gold", "generation", "pred", "recovered", "correct"}
    # maj@k and pass@k from the same answers: items 1-2 have both samples right, items 3-4 one of two.
    assert metrics["pass@k"] == {"1": 0.75, "2": 1.0}  # pass@1 = mean accuracy; any of 2 is right
    assert metrics["maj@k"] == {"1": 1.0, "2": 1.0}  # a 1-1 tie goes to the first answer (A)
    # Each detail row carries its item's maj@k and pass@k at k = sample + 1; their means are the results'.
    assert [r["pass_at_k"] for r in rows] == [1.0, 1.0, 1.0, 1.0, 0.5, 1.0, 0.5, 1.0]
    for k in (1, 2):
        at_k = [r for r in rows if r["sample"] == k - 1]
        assert sum(r["pass_at_k"] for r in at_k) / 4 == metrics["pass@k"][str(k)]
        assert sum(r["maj_at_k"] for r in at_k) / 4 == metrics["maj@k"][str(k)]
    # The `evaluate` metric gives the same from the generations, items' samples in a row.
    from medssr_hub.evaluation.scoring import accuracy_metric as metric

    flat = [t for item in texts for t in item]
    recovered = [None, None, None, "A", None, None, None, None]  # item 2's second sample, recovered as A
    out = metric("official").compute(
        predictions=flat, references=["A"] * 8, recovered=recovered, samples_per_item=2
    )
    assert out["accuracy"] == 0.75 and out["pass@k"] == metrics["pass@k"] and out["maj@k"] == metrics["maj@k"]
    with pytest.raises(ValueError, match="not whole items"):
        metric("official").compute(predictions=flat[:3], references=["A"] * 3, samples_per_item=2)


def test_pass_at_k_is_the_unbiased_estimator_on_hand_worked_cases():
    from math import comb

    from medssr_hub.evaluation.sampling_metrics import majority, pass_at_k, sampling_metrics

    # n=4 samples, c=1 correct: pass@1 = 1/4, pass@2 = 1 - C(3,2)/C(4,2) = 1 - 3/6, pass@4 = 1.
    assert pass_at_k(4, 1, 1) == pytest.approx(0.25)
    assert pass_at_k(4, 1, 2) == pytest.approx(0.5)
    assert pass_at_k(4, 1, 4) == 1.0 and pass_at_k(4, 0, 4) == 0.0
    # n=5, c=2, k=3: 1 - C(3,3)/C(5,3) = 1 - 1/10.
    assert pass_at_k(5, 2, 3) == pytest.approx(0.9)
    for n in range(1, 9):  # the stable product equals the binomial form everywhere
        for c in range(n + 1):
            for k in range(1, n + 1):
                assert pass_at_k(n, c, k) == pytest.approx(1 - comb(n - c, k) / comb(n, k))
    with pytest.raises(ValueError):
        pass_at_k(4, 1, 5)
    assert majority(["B", None, "A", "A", "B"]) == "A" and majority([None, None]) is None
    # Two items, gold A and C: [A, B, A, C] and [B, B, C, C].
    out = sampling_metrics([["A", "B", "A", "C"], ["B", "B", "C", "C"]], ["A", "C"])
    assert out["pass@k"] == pytest.approx({"1": 0.5, "2": 5 / 6, "3": 1.0, "4": 1.0})
    # maj@1: A right, B wrong; maj@4: A (2 of 4) right, B reaches 2 before C: wrong.
    assert out["maj@k"] == {"1": 0.5, "2": 0.5, "3": 0.5, "4": 0.5}


def test_csv_and_markdown_carry_maj_and_pass_at_every_k_of_each_run():
    def bench(samples, mean, maj, passed):
        curve = {str(k): v for k, v in zip(range(1, samples + 1), maj, strict=True)}
        return {"items": 4, "samples": samples, "mean": mean, "std": 0.0, "recovery_rate": 0.0,
                "maj@k": curve, "pass@k": {str(k): v for k, v in zip(curve, passed, strict=True)}}  # fmt: skip

    runs = [
        Run({"model": "one-sample", "benchmarks": {"medqa": bench(1, 0.6, [0.6], [0.6])}}, None, "a"),
        Run(
            {"model": "two-samples", "benchmarks": {"medqa": bench(2, 0.5, [0.5, 0.5], [0.5, 0.75])}},
            None,
            "b",
        ),
    ]
    rows = list(csv.DictReader(io.StringIO(render_csv(runs))))
    assert [r["model"] for r in rows] == ["one-sample", "two-samples"]  # by average: 0.6 first
    assert rows[0]["pass@1"] == "0.6" and rows[0]["pass@2"] == "" and rows[1]["pass@2"] == "0.75"
    assert rows[1]["pass_at_n"] == "0.75" and rows[1]["maj_at_n"] == "0.5"
    md = render_markdown(runs)
    assert (
        "| `two-samples` | 50.0 | 50.0 | 50.0 | 75.0 |" in md
        and "| `one-sample` | 60.0 | – | 60.0 | – |" in md
    )


def test_leaderboard_rejects_what_is_not_a_result(tmp_path):
    (tmp_path / "results.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_runs(tmp_path)
    (tmp_path / "results.json").write_text(json.dumps({"rows": []}))
    with pytest.raises(ValueError, match="not an evaluation result"):
        load_runs(tmp_path)
    assert (
        main(["leaderboard", "--results", str(tmp_path / "none"), "--output_dir", str(tmp_path / "lb")]) == 2
    )


# -- the real model ---------------------------------------------------------------------------------------
@pytest.mark.slow
def test_evaluate_cli_details_unavailable_and_resume(tmp_path, embedded_backend, capsys):
    out = tmp_path / "eval"
    code = main(
        [
            "evaluate",
            "--benchmarks",
            "medqa,bioasq,lancet",
            "--max-items",
            "3",
            *TINY,
            "--output_dir",
            str(out),
        ]
    )
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results["benchmarks"]) == {"medqa", "bioasq"} and "lancet" in results["unavailable"]
    assert "not run: Lancet (lancet) is not available" in capsys.readouterr().err
    details = pd.read_parquet(out / "details" / "medqa.parquet")
    assert len(details) == 6 and {"id", "gold", "generation", "pred", "recovered", "correct"} <= set(
        details.columns
    )
    bio = results["benchmarks"]["bioasq"]
    assert bio["items"] == 3 and bio["samples"] == 2 and len(bio["per_sample"]) == 2
    assert results["benchmarks"]["medqa"]["chance"] == 0.25  # four options each: the plot's chance line
    assert "| `embedded` |" in (out / "results.md").read_text()

    # Resume: a torn last line and a missing item are regenerated, nothing else; results are identical.
    log = out / "generations" / "medqa.jsonl"
    lines = log.read_text().splitlines()
    log.write_text("\n".join(lines[:2]) + "\n" + lines[2][:20])
    counting = CountingBackend(embedded_backend)
    cfg = EvalConfig(
        chat=True, benchmarks="medqa,bioasq", max_items=3, num_samples=2, max_tokens=16, output_dir=str(out)
    )
    again = Evaluator(cfg, backend=counting).run()
    assert counting.prompts == 1
    # The second pass is kept too: the regenerated item's text is the same, so no recovery is redone.
    assert details["recovered"].any() and (out / "recovered" / "medqa.jsonl").read_text().strip()
    assert counting.recoveries == 0
    assert again["benchmarks"]["medqa"]["per_sample"] == results["benchmarks"]["medqa"]["per_sample"]
    assert set(results["benchmarks"]["medqa"]["pass@k"]) == {"1", "2"}  # in results.json, k = 1..samples
    pd.testing.assert_frame_equal(pd.read_parquet(out / "details" / "medqa.parquet"), details)
    # Other settings are refused on resume.
    assert (
        main(
            [
                "evaluate",
                "--chat",
                "true",
                "--benchmarks",
                "medqa",
                "--num-samples",
                "3",
                "--output_dir",
                str(out),
            ]
        )
        == 2
    )


@pytest.mark.slow
def test_evaluate_killed_midway_resumes_to_the_same_result(tmp_path, embedded_dir):
    args = ["--benchmarks", "mmlu", "--max-items", "5", *TINY, "--batch-size", "2"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    full, cut = tmp_path / "full", tmp_path / "cut"
    cmd = [sys.executable, "-m", "medssr_hub.cli", "evaluate", *args]
    subprocess.run([*cmd, "--output_dir", str(full)], cwd=ROOT, env=env, check=True, capture_output=True)
    proc = subprocess.Popen(
        [*cmd, "--output_dir", str(cut)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    log = cut / "generations" / "mmlu.jsonl"
    deadline = time.time() + 300
    while (
        (not log.exists() or not log.read_text().strip()) and time.time() < deadline and proc.poll() is None
    ):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = len(log.read_text().splitlines())
    assert 1 <= finished < 5, f"the kill should land mid-run, {finished} of 5 items were on disk"
    assert not (cut / "details" / "mmlu.parquet").exists()
    resumed = subprocess.run(
        [*cmd, "--output_dir", str(cut)], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"{finished} of 5 items already generated" in resumed.stderr
    pd.testing.assert_frame_equal(
        pd.read_parquet(cut / "details" / "mmlu.parquet"), pd.read_parquet(full / "details" / "mmlu.parquet")
    )


@pytest.mark.slow
def test_lighteval_pipeline_scores_equal_rescored_generations(tmp_path, embedded_dir):
    out = tmp_path / "le"
    code = main(
        [
            "evaluate",
            "--engine",
            "lighteval",
            "--recovery",
            "false",
            "--benchmarks",
            "bioasq,medbullets",
            "--max-items",
            "4",
            *TINY,
            "--output_dir",
            str(out),
        ]
    )
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    for name in ("bioasq", "medbullets"):
        bench = results["benchmarks"][name]
        lines = (out / "generations" / f"{name}.jsonl").read_text().splitlines()
        assert len(lines) == 4 and all(len(json.loads(x)["samples"]) == 2 for x in lines)
        # lighteval's own metric (our extraction inside its Pipeline) == our scoring of its saved generations
        assert bench["lighteval_acc"] == pytest.approx(bench["mean"])
    # Re-scored from the saved generations by the shared rule, outside any pipeline: the same numbers.
    records = load_records(Path(os.environ["MEDSSR_BENCHMARKS_DIR"]) / "bioasq.json")[0][:4]
    saved = {
        json.loads(x)["id"]: json.loads(x)["samples"]
        for x in (out / "generations" / "bioasq.jsonl").read_text().splitlines()
    }
    texts = [saved[r.id] for r in records]
    official = Extraction("official", "HuggingFaceTB/SmolLM2-135M-Instruct")  # the run's default rule
    metrics, _ = score(
        records, extract_or_recover(records, texts, None, extraction=official), texts, official
    )
    assert metrics["mean"] == pytest.approx(results["benchmarks"]["bioasq"]["lighteval_acc"])


@pytest.mark.slow
def test_loglikelihood_mode(tmp_path, embedded_backend):
    cfg = EvalConfig(
        chat=True, benchmarks="bioasq", max_items=4, mode="loglikelihood", output_dir=str(tmp_path)
    )
    results = Evaluator(cfg, backend=embedded_backend).run()
    details = pd.read_parquet(tmp_path / "details" / "bioasq.parquet")
    assert len(details) == 4 and set(details["pred"]) <= {"A", "B"} and not details["recovered"].any()
    assert results["benchmarks"]["bioasq"]["std"] == 0.0


@pytest.mark.slow
def test_leaderboard_joins_runs_and_pushes_to_a_hub_over_http(tmp_path, embedded_backend, monkeypatch):
    runs = []
    for label, mode in (("smollm2-cot", "generative"), ("smollm2-ll", "loglikelihood")):
        cfg = EvalConfig(
            chat=True,
            display_name=label,
            mode=mode,
            benchmarks="medqa,bioasq",
            max_items=2,
            num_samples=2,
            max_tokens=16,
            output_dir=str(tmp_path / label),
        )
        Evaluator(cfg, backend=embedded_backend).run()
        runs.append(str(tmp_path / label))
    rows = table_rows([run for r in runs for run in load_runs(r)])
    assert {r["model"] for r in rows} == {"smollm2-cot", "smollm2-ll"}
    assert all(r["average"] == pytest.approx((r["medqa_mean"] + r["bioasq_mean"]) / 2) for r in rows)
    hub = FakeHub(token="hf_" + "E" * 30)
    monkeypatch.setenv("HF_TOKEN", hub.token)
    try:
        code = main(
            [
                "leaderboard",
                "--results",
                *runs,
                "--output_dir",
                str(tmp_path / "lb"),
                "--publish_repo",
                "medssr/leaderboard",
                "--publish_version",
                "v1.0.0",
                "--hub",
                hub.url,
            ]
        )
        assert code == 0
        for ext in ("md", "csv", "json", "png"):
            assert (tmp_path / "lb" / f"leaderboard.{ext}").stat().st_size > 0
        md = (tmp_path / "lb" / "leaderboard.md").read_text()
        assert "| model | MedQA | BioASQ | average | rare-disease | other rule | recovered |" in md
        # No column repeats another: the row read by the official rule shows the lenient average beside it.
        cot = next(line for line in md.splitlines() if line.startswith("| `smollm2-cot`"))  # the main table
        assert "| lenient " in cot and "official " not in cot
        assert md == render_markdown([run for r in runs for run in load_runs(r)])
        # The published repo loads with plain `datasets` to exactly the evaluation schemas.
        published = str(resolve_dataset("medssr/leaderboard", "v1.0.0", hub=hub.url))
        details = load_dataset(published, "details", split="train")
        assert details.features == LEADERBOARD_DETAILS_FEATURES
        assert (
            len(details) == 2 * 2 * 2 + 2 * 2
        )  # generative: 2 benchmarks x 2 items x 2 samples; ll: 1 sample
        table = load_dataset(published, "results", split="train")
        assert table.features == RESULTS_FEATURES and len(table) == 4
        assert set(table["model"]) == {"smollm2-cot", "smollm2-ll"}
        cot = json.loads((tmp_path / "smollm2-cot" / "results.json").read_text())["benchmarks"]
        for row in table:  # maj@n and pass@n at n = 2 samples, as results.json holds them
            if row["model"] == "smollm2-cot":
                assert row["maj_at_n"] == cot[row["benchmark"]]["maj@k"]["2"]
                assert row["pass_at_n"] == cot[row["benchmark"]]["pass@k"]["2"]
                assert row["pass_at_k"] == [cot[row["benchmark"]]["pass@k"][k] for k in ("1", "2")]
                assert row["maj_at_k"] == [cot[row["benchmark"]]["maj@k"][k] for k in ("1", "2")]
        # The markdown's maj@k / pass@k table: k = 1..2 for the sampled run, k = 1 for the loglikelihood one.
        lines = md.splitlines()
        assert "| model | maj@1 | maj@2 | pass@1 | pass@2 |" in lines
        (cot_row,) = [line for line in lines if line.startswith("| `smollm2-cot` |") and line.count("|") == 6]
        rows_by_model = {r["model"]: r for r in table_rows([run for r in runs for run in load_runs(r)])}
        pass2 = rows_by_model["smollm2-cot"]["pass@2"]
        assert f"{100 * pass2:.1f}" in cot_row
        ll = rows_by_model["smollm2-ll"]  # one sample: maj@1 and pass@1 are the accuracy
        assert ll["maj_at_n"] == pytest.approx(ll["average"]) and ll["pass_at_n"] == pytest.approx(
            ll["average"]
        )
        assert all(not str(s).startswith("/") for s in table["source"])  # no machine-local paths

        # Reproductions merge: the published table (read over HTTP) joins a local run folder.
        merged = tmp_path / "merged"
        args = [
            "--results",
            "medssr/leaderboard@v1.0.0",
            runs[1],
            "--hub",
            hub.url,
            "--output_dir",
            str(merged),
        ]
        assert main(["leaderboard", *args, "--publish_repo", "medssr/merged"]) == 0
        rows = json.loads((merged / "leaderboard.json").read_text())["rows"]
        assert sorted((r["model"], r["from"]) for r in rows) == [
            ("smollm2-cot", "medssr/leaderboard@v1.0.0"),
            ("smollm2-ll", "medssr/leaderboard@v1.0.0"),
            ("smollm2-ll", "run smollm2-ll"),
        ]
        ll = [r for r in rows if r["model"] == "smollm2-ll"]
        assert ll[0]["medqa_mean"] == ll[1]["medqa_mean"] and ll[0]["average"] == ll[1]["average"]
        assert "| medssr/leaderboard@v1.0.0 |" in (merged / "leaderboard.md").read_text()
        again = load_dataset(
            str(resolve_dataset("medssr/merged", "v0.1.0", hub=hub.url)), "details", split="train"
        )
        assert len(again) == len(details) + 2 * 2  # the repo's details, then the local ll run's
        # The token was sent (the server checks it) but is in no published file and no local output.
        published = [
            data for repo in hub.repos.values() for files in repo.commits.values() for data in files.values()
        ]
        assert published and not any(hub.token.encode() in data for data in published)
        assert not [p for p in tmp_path.rglob("*") if p.is_file() and hub.token.encode() in p.read_bytes()]
    finally:
        hub.close()


def _publish_rows(hub_url: str, repo_id: str, files: dict[str, list[dict]], tmp_path) -> None:
    """A dataset repo on the HTTP test Hub laid out as the Hub lays out its configs and splits."""
    from medssr_hub.hub import publish

    folder = tmp_path / repo_id.replace("/", "--")
    for rel, rows in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        if rel.endswith(".jsonl"):
            (folder / rel).write_text("".join(json.dumps(row) + "\n" for row in rows))
        else:
            pd.DataFrame(rows).to_parquet(folder / rel)
    publish(folder, repo_id, "v1.0.0", hub=hub_url)


def test_registry_reads_each_benchmarks_hub_dataset_through_its_column_mapping(tmp_path, monkeypatch):
    """One dataset shaped like each registry entry's Hub dataset, served over HTTP: options as columns, as a
    list, as a dict, as lines inside the question, fixed; answers as a letter, an index or the option text."""
    hub = FakeHub(token="hf_" + "R" * 30)
    monkeypatch.setenv("HF_TOKEN", hub.token)
    monkeypatch.setenv("MEDSSR_BENCHMARKS_DIR", str(tmp_path / "no-files"))
    (tmp_path / "no-files").mkdir()
    stem = "A 30-year-old presents with fever and a rash. What is the diagnosis?"
    try:
        _publish_rows(hub.url, "GBaker/MedQA-USMLE-4-options", {"data/test-00000-of-00001.parquet": [
            {"question": stem, "options": {"A": "w", "B": "x", "C": "y", "D": "z"}, "answer_idx": "C", "answer": "y"},
        ]}, tmp_path)  # fmt: skip
        _publish_rows(hub.url, "openlifescienceai/medmcqa", {"data/validation-00000-of-00001.parquet": [
            {"id": "m1", "question": stem, "opa": "w", "opb": "x", "opc": "y", "opd": "z", "cop": 3},
            {"id": "m2", "question": stem, "opa": "w", "opb": "x", "opc": "y", "opd": "z", "cop": -1},
        ]}, tmp_path)  # fmt: skip
        _publish_rows(hub.url, "openlifescienceai/pubmedqa", {"data/test-00000-of-00001.parquet": [
            {"id": "p7", "data": {"Question": "Does X help?", "Context": ["Background.", "Results."],
                                  "Options": {"A": "yes", "B": "no", "C": "maybe", "D": None},  # struct
                                  "Correct Option": "C",
                                  "Correct Answer": "maybe", "Long Answer": "It may."}},
        ]}, tmp_path)  # fmt: skip
        _publish_rows(hub.url, "cais/mmlu", {
            f"{subject}/test-00000-of-00001.parquet": [
                {"question": f"{subject}: which one?", "subject": subject, "choices": ["w", "x", "y", "z"], "answer": 1}
            ]
            for subject in MMLU_MEDICAL
        }, tmp_path)  # fmt: skip
        _publish_rows(hub.url, "TsinghuaC3I/MedXpertQA", {"Text/test.jsonl": [
            {"id": "x1", "question": stem, "options": {k: f"o{k}" for k in "ABCDE"}, "label": "E"},
        ]}, tmp_path)  # fmt: skip
        _publish_rows(hub.url, "tdlhl/RareDis-Sub", {"data/test-00000-of-00001.parquet": [
            {"id": "r1", "question": f"{stem}\nA. Fabry disease\nB. Gout", "gold": "A", "name": "raredis"},
        ]}, tmp_path)  # fmt: skip

        pinned = [b for b in BENCHMARKS.values() if b.hub_id and b.revision != "main"]
        for bench in pinned:  # each registry entry is read at its pinned commit
            hub.pin(bench.hub_id, bench.revision)

        def load(name):
            got, records, source = load_benchmark(name, hub=hub.url)
            assert got == name and source == BENCHMARKS[name].hub_id
            return records

        (medqa,) = load("medqa")
        assert medqa.options == {"A": "w", "B": "x", "C": "y", "D": "z"} and medqa.answer == "C"
        (medmcqa,) = load("medmcqa")  # the row with cop -1 has no answer: rejected, counted, not loaded
        assert medmcqa.id == "m1" and medmcqa.answer == "D"
        (pubmedqa,) = load("pubmedqa")
        assert pubmedqa.options == {"A": "yes", "B": "no", "C": "maybe"} and pubmedqa.answer == "C"
        assert pubmedqa.question == "Does X help?" and pubmedqa.id == "p7"  # no abstract, as MedSSR asks
        mmlu = load("mmlu")
        assert len(mmlu) == len(MMLU_MEDICAL) and {r.answer for r in mmlu} == {"B"}
        (xpert,) = load("medxpertqa")
        assert xpert.answer == "E" and len(xpert.options) == 5
        asked = {path for _, path in hub.requests}
        assert all(any(b.revision in path and b.hub_id in path for path in asked) for b in pinned)
        # RareDis-Sub as the registry reads it must hold its card's 2,122 items (this one holds 1); a
        # revision the user names is read as it is.
        with pytest.raises(BenchmarkCountMismatch, match=r"holds 1 items, its card states 2,122"):
            load("raredis")
        _, (rare,), _ = load_benchmark("raredis", {"raredis": "tdlhl/RareDis-Sub@main"}, hub=hub.url)
        assert rare.options == {"A": "Fabry disease", "B": "Gout"} and rare.answer == "A"
        # A config the repo does not have is named, with the ones it has.
        with pytest.raises(RecordFormatError, match=r"has no config 'nope'; it has \['Text'\]"):
            load_records("TsinghuaC3I/MedXpertQA", revision="v1.0.0", hub=hub.url, subset="nope")
        # Another revision than the pinned one, named where the benchmark is configured.
        _, records, _ = load_benchmark("medqa", {"medqa": "GBaker/MedQA-USMLE-4-options@v1.0.0"}, hub=hub.url)
        assert [r.answer for r in records] == ["C"]
        with pytest.raises(BenchmarkUnavailable, match="GBaker/MedQA-USMLE-4-options@nope"):
            load_benchmark("medqa", {"medqa": "GBaker/MedQA-USMLE-4-options@nope"}, hub=hub.url)
    finally:
        hub.close()


def test_a_model_we_published_carries_its_chat_mode(tmp_path, embedded_dir):
    """evaluate and label read `chat` from the run config a model of ours was published with (local folder or
    local hub), when the config does not set it; a model that says nothing still needs `chat`."""
    import shutil

    from medssr_hub.errors import ConfigError
    from medssr_hub.hub import RUN_CONFIG, LocalHub
    from medssr_hub.labeling.label import LabelConfig

    folder = tmp_path / "policy"
    shutil.copytree(embedded_dir, folder)
    (folder / RUN_CONFIG).write_text(
        json.dumps({"MedSSRScriptArguments": {"chat": False, "stage": "stage1"}})
    )
    hub = LocalHub(tmp_path / "hub")
    hub.publish(folder, "medssr/base-policy", "v0.1.0", repo_type="model")
    settings = {"model": "medssr/base-policy", "model_revision": "v0.1.0", "hub": str(tmp_path / "hub")}
    assert EvalConfig(**settings).chat is False and LabelConfig(**settings).chat is False
    assert EvalConfig(model=str(folder)).chat is False
    assert EvalConfig(**settings, chat=True).chat is True  # given, it wins
    (folder / RUN_CONFIG).unlink()
    with pytest.raises(ConfigError, match="set `chat: true`"):
        EvalConfig(model=str(folder))
