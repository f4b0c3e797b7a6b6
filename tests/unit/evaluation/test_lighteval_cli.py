"""lighteval's own command line with our static task suite (medssr_hub.evaluation.lighteval_suite):
benchmark datasets shaped like the registry's Hub datasets, served by the Hub HTTP test server
(`HF_ENDPOINT`), the embedded model on lighteval's transformers backend."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from huggingface_hub import HfApi

from medssr_hub.answers import Extraction, answer_prompt
from medssr_hub.evaluation.registry import BENCHMARKS, MMLU_MEDICAL
from medssr_hub.paths import package_data
from medssr_hub.records import load_records
from tests.support.fake_hub import FakeHub

BIN = Path(sys.executable).parent
STEM = "A 30-year-old presents with fever and a malar rash. What is the most likely diagnosis?"


def _upload(api: HfApi, repo_id: str, files: dict[str, list[dict]], folder: Path, readme: str = "") -> None:
    """A dataset as its owner would push it: parquet files (and a card declaring configs), no manifest."""
    for rel, rows in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(rows).to_parquet(folder / rel)
    if readme:
        (folder / "README.md").write_text(readme)
    api.create_repo(repo_id, repo_type="dataset")
    api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="dataset")


def _env(hub: FakeHub, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "MEDSSR_LIGHTEVAL_"))}
    env.update(
        HF_ENDPOINT=hub.url,
        HF_TOKEN=hub.token,
        HF_HOME=str(tmp_path / "hf-home"),
        HF_DATASETS_CACHE=str(tmp_path / "datasets-cache"),
        **extra,
    )
    return env


def test_plain_lighteval_cli_stops_at_its_registry_offline(tmp_path):
    """The upstream defect docs/evaluation.md names: lighteval 0.13's registry imports every built-in task module
    before ours; offline, tiny_benchmarks' download fails (and with huggingface_hub 1.x a judge metric's
    `list_models(model_name=...)` raises TypeError). When this test fails, lighteval has fixed it:
    update docs/evaluation.md's "lighteval's command line"."""
    hub = FakeHub(token="hf_" + "L" * 30)
    try:
        run = subprocess.run(
            [str(BIN / "lighteval"), "accelerate", "model_name=unused", "medssr|medqa|0",
             "--custom-tasks", "medssr_hub.evaluation.lighteval_suite"],
            env=_env(hub, tmp_path), capture_output=True, text=True, timeout=300,
        )  # fmt: skip
    finally:
        hub.close()
    output = run.stdout + run.stderr
    assert run.returncode != 0
    assert "tinyBenchmarks" in output or "list_models() got an unexpected keyword argument" in output, output[
        -3000:
    ]


@pytest.mark.slow
def test_lighteval_cli_scores_our_tasks_from_local_files_and_hub_datasets(tmp_path, embedded_dir):
    """`medssr-hub lighteval accelerate MODEL_YAML "medqa|0,mmlu_medical|0"` (the `task|few_shot` form
    lighteval 0.13 documents, no deprecation warning): lighteval's CLI entry point reads MedQA from the
    local benchmarks folder (no request for it) and MMLU's Hub dataset through the registry's column
    mapping over HTTP; the model receives exactly the official chat prompt, and `medssr_acc` equals our own
    scoring of its samples."""
    hub = FakeHub(token="hf_" + "L" * 30)
    api = HfApi(endpoint=hub.url, token=hub.token)
    options = {"A": "Measles", "B": "Gout", "C": "Systemic lupus erythematosus", "D": "Influenza"}
    local = tmp_path / "benchmarks"
    local.mkdir()
    lines = "\n".join(f"{k}. {v}" for k, v in options.items())
    (local / "medqa.json").write_text(json.dumps([
        {"id": f"medqa-{i}", "question": f"{STEM} (case {i})\n{lines}", "gold": "C", "name": "medqa"}
        for i in range(3)
    ]))  # fmt: skip
    try:
        configs = "".join(
            f"- config_name: {s}\n  data_files:\n  - split: test\n    path: {s}/test-*\n"
            for s in MMLU_MEDICAL
        )
        _upload(api, "cais/mmlu", {
            f"{s}/test-00000-of-00001.parquet": [
                {"question": f"Which structure ({s})?", "subject": s, "choices": ["w", "x", "y", "z"], "answer": 1}
            ]
            for s in MMLU_MEDICAL
        }, tmp_path / "mmlu", readme=f"---\nconfigs:\n{configs}---\n")  # fmt: skip
        hub.pin(BENCHMARKS["mmlu"].hub_id, BENCHMARKS["mmlu"].revision)  # the tasks read the pinned commit
        uploaded = len(hub.requests)

        # The shipped chat-model config with only the model and the sizes swapped.
        config = yaml.safe_load((package_data("recipes") / "lighteval" / "chat_model.yaml").read_text())
        config["model_parameters"].update(
            model_name=str(embedded_dir), device="cpu", dtype="float32", batch_size=4
        )
        (tmp_path / "model.yaml").write_text(yaml.safe_dump(config))
        out = tmp_path / "out"
        run = subprocess.run(
            [str(BIN / "medssr-hub"), "lighteval", "accelerate", str(tmp_path / "model.yaml"),
             "medqa|0,mmlu_medical|0", "--max-samples", "2", "--output-dir", str(out), "--save-details"],
            env=_env(hub, tmp_path, MEDSSR_LIGHTEVAL_SAMPLES="2", MEDSSR_LIGHTEVAL_MAX_TOKENS="24",
                     MEDSSR_LIGHTEVAL_EXTRACTION="lenient", MEDSSR_BENCHMARKS_DIR=str(local),
                     MEDSSR_HUB_CACHE=str(tmp_path / "cache")),
            capture_output=True, text=True, timeout=1200,
        )  # fmt: skip
        assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
        assert "Deprecation warning" not in run.stdout + run.stderr
        served = hub.requests[uploaded:]
        medqa_records, _ = load_records(local / "medqa.json")
    finally:
        hub.close()

    # MedQA came from the local file (nothing asked the hub for it); MMLU over HTTP at the pinned commit.
    fetched = {path for method, path in served if method == "GET" and "/resolve/" in path}
    assert not [path for _, path in served if "MedQA" in path or "medqa" in path.lower()]
    mmlu_at = BENCHMARKS["mmlu"].revision
    assert {s for s in MMLU_MEDICAL if any(f"{mmlu_at}/{s}/test-" in p for p in fetched)} == set(MMLU_MEDICAL)

    (results_file,) = out.glob("results/**/*.json")
    results = json.loads(results_file.read_text())["results"]
    expected = {"medqa|0", *(f"mmlu_medical:{s}|0" for s in MMLU_MEDICAL)}
    assert expected <= set(results)

    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(embedded_dir)
    by_stem = {r.question: r for r in medqa_records}
    extraction = Extraction("lenient")
    for task in expected:
        (details_file,) = out.glob(f"details/**/details_{task}_*.parquet")
        details = pd.read_parquet(details_file)
        assert len(details) == (2 if task == "medqa|0" else 1)  # --max-samples 2; one row per MMLU subject
        per_doc = []
        for doc, response, metric in zip(
            details["doc"], details["model_response"], details["metric"], strict=True
        ):
            texts = list(response["text"])
            assert len(texts) == 2  # MEDSSR_LIGHTEVAL_SAMPLES
            gold = doc["specific"]["gold"]
            ours = sum(extraction.first_pass(t, list(doc["specific"]["letters"])) == gold for t in texts) / 2
            assert metric["medssr_acc"] == pytest.approx(ours)
            per_doc.append(ours)
            if task == "medqa|0":
                record = by_stem[doc["query"].split("\n")[0]]
                assert gold == "C" and record.answer == "C"
                expected_prompt = tokenizer.apply_chat_template(
                    answer_prompt(record, chat=True), tokenize=False, add_generation_prompt=True
                )
                assert tokenizer.decode(list(response["input_tokens"])) == expected_prompt
        assert results[task]["medssr_acc"] == pytest.approx(sum(per_doc) / len(per_doc))


def test_suite_prompt_functions_read_each_hub_shape_and_count_bad_rows():
    """Every task of TASKS_TABLE turns a row shaped like its Hub dataset into the official prompt and the
    gold letter through the registry's column mapping; a row it cannot read is skipped and counted."""
    from medssr_hub.answers import BASE_TEMPLATE
    from medssr_hub.evaluation import lighteval_suite as suite

    rows = {
        "medqa": ({"question": STEM, "options": {"A": "w", "B": "x", "C": "y", "D": "z"}, "answer_idx": "C"}, "C"),
        "medmcqa": ({"id": "m1", "question": STEM, "opa": "w", "opb": "x", "opc": "y", "opd": "z", "cop": 3}, "D"),
        "pubmedqa": ({"id": "p7", "data": {"Question": "Does X help?", "Context": ["Bg."], "Correct Option": "C",
                                           "Options": {"A": "yes", "B": "no", "C": "maybe"}}}, "C"),
        "mmlu_medical": ({"question": "Which?", "subject": "anatomy", "choices": ["w", "x", "y", "z"], "answer": 1}, "B"),
        "medxpertqa": ({"id": "x1", "question": STEM, "options": {k: f"o{k}" for k in "ABCDE"}, "label": "E"}, "E"),
        "raredis": ({"id": "r1", "question": f"{STEM}\nA. Fabry disease\nB. Gout", "gold": "A"}, "A"),
    }  # fmt: skip
    tasks = {c.name: c for c in suite.task_configs(data="hub")}
    assert {name.split(":")[0] for name in tasks} == set(rows) | {f"{n}_base" for n in rows}
    assert len(tasks) == 2 * (5 + len(MMLU_MEDICAL))
    for name, config in tasks.items():
        row, gold = rows[name.split(":")[0].removesuffix("_base")]
        doc = config.prompt_function(dict(row), name)
        assert doc.choices[doc.gold_index] == gold == doc.specific["gold"], name
        if name.split(":")[0].endswith("_base"):
            assert doc.query.startswith(BASE_TEMPLATE.split("{question}")[0]), name
        else:
            assert doc.query.startswith(row.get("question") or row["data"]["Question"]), name
        bench = BENCHMARKS[name.split(":")[0].removesuffix("_base").replace("mmlu_medical", "mmlu")]
        assert (config.hf_repo, config.hf_revision) == (bench.hub_id, bench.revision), name

    before = suite.REJECTED.rejected.total()
    assert tasks["medmcqa"].prompt_function({"id": "bad", "question": STEM, "opa": "w", "opb": "x",
                                             "opc": "y", "opd": "z", "cop": -1}, "medmcqa") is None  # fmt: skip
    assert tasks["medqa"].prompt_function({"question": STEM, "options": None}, "medqa") is None
    assert suite.REJECTED.rejected.total() == before + 2
    assert {"answer_not_in_options", "no_options"} <= set(suite.REJECTED.rejected)


def test_medssr_hub_lighteval_reports_usage_errors_as_lighteval_does(capsys):
    from medssr_hub.cli import main

    assert main(["lighteval", "accelerate"]) == 2
    assert "Missing argument 'model_args'" in capsys.readouterr().err


def test_our_loggers_still_report_after_lighteval_s_command_line_is_imported(monkeypatch):
    """Importing `lighteval.__main__` configures logging with dictConfig's default, which disables every
    existing logger: a warning of ours issued afterwards in the same process must still be handled."""
    import logging
    import sys

    from medssr_hub.evaluation.lighteval_tasks import lighteval_cli

    ours = logging.getLogger("medssr_hub.training.vllm_sync")
    monkeypatch.delitem(sys.modules, "lighteval.__main__", raising=False)  # its import-time config runs
    assert lighteval_cli(["--help"]) == 0
    assert "lighteval.__main__" in sys.modules and not ours.disabled
    heard: list[logging.LogRecord] = []
    listener = logging.Handler()
    listener.emit = heard.append  # on our logger itself: lighteval's config replaced the root's handlers
    ours.addHandler(listener)
    try:
        ours.warning("still heard")
    finally:
        ours.removeHandler(listener)
    assert [r.getMessage() for r in heard] == ["still heard"]


def test_suite_reads_local_benchmark_files_first(benchmarks_dir, tmp_path, monkeypatch):
    """With a local benchmarks folder, each benchmark that has a file there is a task on that file (the
    MedSSR evaluation format, no column mapping), the others keep their Hub dataset."""
    from medssr_hub.evaluation import lighteval_suite as suite

    monkeypatch.setenv("MEDSSR_BENCHMARKS_DIR", str(benchmarks_dir))
    monkeypatch.setenv("MEDSSR_HUB_CACHE", str(tmp_path))
    tasks = {c.name: c for c in suite.task_configs(data="auto")}
    files = {p.stem for p in benchmarks_dir.glob("*.json")}
    for name in files:
        task = tasks[suite.TASK_NAMES.get(name, name)]
        assert (Path(task.hf_repo) / "test.json").resolve() == (benchmarks_dir / f"{name}.json").resolve()
        assert task.hf_revision is None
    assert tasks["medxpertqa"].hf_repo == BENCHMARKS["medxpertqa"].hub_id  # no local file: its Hub dataset
    local = {c.name for c in suite.task_configs(data="local")}
    assert {n.removesuffix("_base") for n in local} == {suite.TASK_NAMES.get(n, n) for n in files}
    record = load_records(benchmarks_dir / "medqa.json")[0][0]
    line = json.loads((benchmarks_dir / "medqa.json").read_text())[0]
    doc = tasks["medqa"].prompt_function(line, "medqa")
    assert doc.specific["gold"] == record.answer and doc.query.startswith(record.question)
