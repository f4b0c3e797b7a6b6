"""The main job (`make demo`) end to end on the real model, including kill -9 and resume."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from medssr_hub.cli import main
from medssr_hub.hub import LocalHub
from medssr_hub.pipeline import DemoConfig

SMALL = ["--items-per-benchmark", "2", "--num-samples", "2", "--max-tokens", "24", "--stage1-steps", "1"]


def demo_cmd(out, benchmarks_dir, *extra):
    return [
        sys.executable,
        "-m",
        "medssr_hub.cli",
        "demo",
        "recipes/demo.yaml",
        "--output",
        str(out),
        "--benchmarks-dir",
        str(benchmarks_dir),
        *SMALL,
        *extra,
    ]


def read_answers(folder):
    with (folder / "answers.jsonl").open() as f:
        return {row["id"]: row for row in map(json.loads, f)}


@pytest.mark.slow
def test_demo_killed_midway_resumes_to_the_same_result(tmp_path, benchmarks_dir, embedded_dir):
    root = os.path.dirname(os.path.dirname(__file__))
    hub_root = tmp_path / "hub"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "MEDSSR_HUB_ROOT": str(hub_root)}
    cut_env = {**env, "MEDSSR_HUB_ROOT": str(tmp_path / "hub-cut")}
    full = tmp_path / "full"
    subprocess.run(
        demo_cmd(full, benchmarks_dir, "--batch-size", "4"),
        cwd=root,
        env=env,
        check=True,
        capture_output=True,
    )
    summary = json.loads((full / "summary.json").read_text())
    benchmarks = {"bioasq", "medbullets", "medmcqa", "medqa", "mmlu", "pubmedqa"}
    assert set(summary["per_benchmark"]) == benchmarks
    assert all(summary["per_benchmark"][b]["items"] == 2 for b in benchmarks)
    # Steps 1-2 ran first (recipes/demo.yaml): 12 synthetic questions, then their pseudo-labels, both published.
    assert summary["stages"]["synthesis"]["num_questions"] == 12
    labeling = summary["stages"]["labeling"]
    assert labeling["questions"] == 12 and 0 <= labeling["label_accuracy"] <= 1
    assert set(LocalHub(hub_root).versions("medssr-hub/demo-synthetic-labeled")) == {"v0.1.0"}
    assert (full / "summary.md").read_text().startswith("# medssr-hub demo")
    published = LocalHub(hub_root).pull("medssr-hub/demo-answers", "v0.1.0")
    assert (published / "README.md").read_text().count("| bioasq |") == 1

    # Same run, killed with SIGKILL once some questions are on disk.
    cut = tmp_path / "cut"
    proc = subprocess.Popen(
        demo_cmd(cut, benchmarks_dir, "--batch-size", "4"),
        cwd=root,
        env=cut_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    gen = cut / "generations.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and (not gen.exists() or len(gen.read_text().splitlines()) < 2):
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = len(gen.read_text().splitlines())
    assert 2 <= before < 12, "the kill should land mid-run"
    assert not (cut / "answers.jsonl").exists()

    # The resumed run (other batch size: other batch composition) generates only what is missing.
    resume = demo_cmd(cut, benchmarks_dir, "--batch-size", "6")
    result = subprocess.run(resume, cwd=root, env=cut_env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"{before} already generated" in result.stderr
    assert len(gen.read_text().splitlines()) == 12
    resumed, uninterrupted = read_answers(cut), read_answers(full)
    assert resumed.keys() == uninterrupted.keys()
    for key, row in uninterrupted.items():
        assert resumed[key]["generations"] == row["generations"]
        assert resumed[key]["preds"] == row["preds"]
    # The published data are byte-identical; running the finished job again publishes nothing new.
    cut_published = LocalHub(tmp_path / "hub-cut").pull("medssr-hub/demo-answers", "v0.1.0")
    data = "data/test-00000.parquet"
    assert (cut_published / data).read_bytes() == (published / data).read_bytes()
    again = subprocess.run(resume, cwd=root, env=cut_env, capture_output=True, text=True)
    assert again.returncode == 0 and "12 already generated" in again.stderr
    assert "already published with this content" in again.stderr


def test_changed_settings_are_refused_on_resume(tmp_path, benchmarks_dir):
    (tmp_path / "run.json").write_text(json.dumps({"model": "other"}))
    code = main(["demo", "--output", str(tmp_path), "--benchmarks-dir", str(benchmarks_dir)])
    assert code == 2


def test_clear_errors(tmp_path, capsys):
    code = main(["demo", "--output", str(tmp_path / "o"), "--benchmarks-dir", str(tmp_path / "none")])
    assert code == 2
    err = capsys.readouterr().err
    assert "No benchmarks folder" in err and "MEDSSR_BENCHMARKS_DIR" in err
    (tmp_path / "bad.yaml").write_text("modle: embedded\n")
    with pytest.raises(ValueError, match="unknown config keys \\['modle'\\]"):
        DemoConfig.from_yaml(tmp_path / "bad.yaml")
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.startswith("medssr-hub 0.1.0")
