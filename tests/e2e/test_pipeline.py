"""The main job (`make demo`) end to end on the real model, including kill -9 and resume."""

import json
import os
import secrets
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
from datasets import load_dataset

from medssr_hub.cli import main
from medssr_hub.config import config_from_dict, parse_config
from medssr_hub.errors import ConfigError
from medssr_hub.hub import LocalHub
from medssr_hub.records import load_records
from medssr_hub.runs.settings import RunSettings
from medssr_hub.schema import (
    LABELED_FEATURES,
    LEADERBOARD_DETAILS_FEATURES,
    RESULTS_FEATURES,
    SYNTHETIC_FEATURES,
)
from medssr_hub.training import grpo, sft
from tests.support.paths import ROOT

# The embedded engine on every machine: these tests are about the pipeline and its resume, and the shipped
# `backend: auto` would pick vLLM on some CPUs (its demo run is measured by bench/demo_backends.py).
SMALL = ["--items-per-benchmark", "2", "--num-samples", "2", "--max-tokens", "24", "--backend", "embedded"]
# Shorter votes and method-check answers than the shipped demo's 128 and 96 tokens (CI time; every step
# still runs on the real model).
FASTER = ["--labeling", '{"max_tokens": 32}', "--keyed_max_tokens", "32"]


def demo_cmd(out, benchmarks_dir, *extra):
    return [
        sys.executable,
        "-m",
        "medssr_hub.cli",
        "demo",
        "--config",
        "recipes/demo.yaml",
        "--output_dir",
        str(out),
        "--benchmarks-dir",
        str(benchmarks_dir),
        *SMALL,
        *extra,
    ]


def generated(folder):
    return sum(
        len(f.read_text().splitlines()) for f in (folder / "eval" / "base" / "generations").glob("*.jsonl")
    )


@pytest.mark.slow
@pytest.mark.timeout(1800)  # four demo runs: full, killed, resumed, repeated
def test_demo_runs_the_pipeline_and_resumes_after_kill(tmp_path, benchmarks_dir, embedded_dir):
    root = str(ROOT)
    hub_root = tmp_path / "hub"
    canary = "hf_" + secrets.token_hex(16)  # the token must reach no log, card, config, result or file
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "MEDSSR_HUB_ROOT": str(hub_root), "HF_TOKEN": canary}
    cut_env = {**env, "MEDSSR_HUB_ROOT": str(tmp_path / "hub-cut")}
    full = tmp_path / "full"
    done = subprocess.run(
        demo_cmd(
            full,
            benchmarks_dir,
            "--batch-size",
            "4",
            "--stage1",
            '{"max_steps": 1, "max_completion_length": 32}',
            "--stage2",
            '{"max_steps": 1, "max_completion_length": 32}',
            "--keyed_eval",
            '{"num_questions": 16}',
            "--keyed_eval_size",
            "8",
            *FASTER,
        ),
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((full / "summary.json").read_text())
    benchmarks = {"bioasq", "medbullets", "medmcqa", "medqa", "mmlu", "pubmedqa", "raredis_catalogue"}
    # Steps 1-3 (recipes/demo.yaml): 12 synthetic questions, their pseudo-labels, one stage 1 step; published.
    assert summary["stages"]["synthesis"]["num_questions"] == 12
    labeling = summary["stages"]["labeling"]
    assert labeling["questions"] == 12 and 0 <= labeling["label_accuracy"] <= 1
    assert summary["stages"]["stage1"]["steps"] == 1
    hub = LocalHub(hub_root)
    assert set(hub.versions("medssr-hub/demo-synthetic-labeled")) == {"v0.1.0"}
    assert set(hub.versions("medssr-hub/demo-stage1", "model")) == {"v0.1.0"}
    # Step 4: stage 2 from the stage 1 model by repo id and version, on held-out keyed vignettes.
    assert summary["stages"]["stage2"]["steps"] == 1 and summary["stages"]["heldout"]["num_questions"] == 12
    card2 = (hub.pull("medssr-hub/demo-stage2", "v0.1.0", "model") / "README.md").read_text()
    assert "base_model: medssr-hub/demo-stage1" in card2 and "held-out keyed vignettes" in card2
    assert "`medssr-hub/demo-vignettes-heldout` @ `v0.1.0`" in card2
    # Steps 5-6: the three models on every benchmark file, 2 items each, then the leaderboard, published.
    evaluation = summary["evaluation"]
    assert set(evaluation) == {"base (embedded)", "stage 1 (1 GRPO steps)", "stage 2 (1 GRPO steps)"}
    assert all(
        set(per) == benchmarks and all(b["items"] == 2 for b in per.values()) for per in evaluation.values()
    )
    assert (full / "summary.md").read_text().startswith("# medssr-hub demo")
    # Step 5a: every model on the same held-out keyed vignettes (no trained disease), with intervals.
    check = summary["method check"]
    assert set(check) == {"base", "stage1", "stage2"} and all(row["items"] == 8 for row in check.values())
    trained = {
        json.loads(line)["disease_id"]
        for stage in ("synthesis", "heldout")
        for line in pd.read_parquet(full / stage / "dataset" / "data" / "train-00000.parquet")
        .to_json(orient="records", lines=True)
        .splitlines()
    }
    keyed = [
        json.loads(line) for line in (full / "keyed_eval" / "keyed_vignettes.jsonl").read_text().splitlines()
    ]
    assert len(keyed) == 8 and not {r["disease_id"] for r in keyed} & trained
    assert all(r["answer"] == r["key"] for r in keyed)
    for row in check.values():
        lo, hi = row["ci95"]
        assert 0 <= lo <= row["accuracy"] <= hi <= 1 and row["official"] == row["accuracy"]
    assert "vs base" in check["stage1"] and "vs base" not in check["base"]
    md = (full / "summary.md").read_text()
    assert "Method check: 8 held-out keyed vignettes" in md and "| accuracy [95% CI] | other rule |" in md
    assert (full / "leaderboard" / "leaderboard.png").exists()
    # Every repo the demo publishes loads with plain `datasets` to exactly its stage's schema.
    for repo, config, features in (
        ("medssr-hub/demo-synthetic", "default", SYNTHETIC_FEATURES),
        ("medssr-hub/demo-synthetic-labeled", "default", LABELED_FEATURES),
        ("medssr-hub/demo-vignettes-heldout", "default", SYNTHETIC_FEATURES),
        ("medssr-hub/demo-leaderboard", "results", RESULTS_FEATURES),
        ("medssr-hub/demo-leaderboard", "details", LEADERBOARD_DETAILS_FEATURES),
    ):
        loaded = load_dataset(str(hub.pull(repo, "v0.1.0")), config)
        assert loaded and all(d.features == features for d in loaded.values()), repo
        card = (hub.pull(repo, "v0.1.0") / "README.md").read_text()
        assert str(tmp_path) not in card and "output_dir" not in card, repo
    published = hub.pull("medssr-hub/demo-leaderboard", "v0.1.0")
    # one row per model in each of the card's two tables: accuracy, then maj@k / pass@k
    assert (published / "README.md").read_text().count("| `base (embedded)` |") == 2
    assert (published / "data" / "details-00000.parquet").exists()

    # After the demo, the training recipes as shipped, in data order (only sizes overridden): stage 1 trains
    # on the demo's labeled split and publishes; stage 2 (from that model, on the demo's held-out vignettes)
    # and SFT (on its distillation file, `outputs/demo/sft/data.jsonl`, read from where a user runs them)
    # resolve everything they read. Their training runs are tests/e2e/test_recipes.py's (stage 2) and
    # test_ablation.py's (the sft row, from this recipe), which CI time does not allow twice.
    user = tmp_path / "user"
    (user / "outputs").mkdir(parents=True)
    (user / "outputs" / "demo").symlink_to(full)
    rl = ["--max_steps", "1", "--per_device_train_batch_size", "4", "--max_completion_length", "16"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MEDSSR_HUB_ROOT", str(hub_root))
        mp.chdir(user)
        argv = ["stage1", "--config", "recipes/smollm2/stage1.yaml", *rl, "--output_dir", "out-stage1"]
        assert main(argv) == 0
        script, _, model = parse_config(grpo.CONFIG_TYPES, ["--config", "recipes/smollm2/stage2.yaml"])
        records, _ = load_records(script.dataset_name, revision=script.dataset_revision, split="train")
        assert records, "stage2"
        assert (model.model_name_or_path, model.model_revision) == (
            "medssr-hub/smollm2-medssr-stage1",
            "v0.1.0",
        )
        script, _, _ = parse_config(sft.CONFIG_TYPES, ["--config", "recipes/smollm2/sft.yaml"])
        records, _ = load_records(script.dataset_name, revision=script.dataset_revision)  # SFT reads a file
        assert records, "sft"
    assert set(hub.versions("medssr-hub/smollm2-medssr-stage1", "model")) == {"v0.1.0"}
    card = (hub.pull("medssr-hub/smollm2-medssr-stage1", "v0.1.0", "model") / "README.md").read_text()
    assert "`medssr-hub/demo-synthetic-labeled` @ `v0.1.0`" in card

    # The evaluation, killed with SIGKILL once some questions are on disk.
    cut = tmp_path / "cut"
    # Steps 2-4 and 5a off (CI time; their resume is tested stage by stage): the base model's evaluation
    # is killed and resumed.
    evaluation_only = ["--labeling", "null", "--keyed_eval", "null"]
    cut_cmd = demo_cmd(cut, benchmarks_dir, "--batch-size", "4", *evaluation_only)
    proc = subprocess.Popen(
        cut_cmd, cwd=root, env=cut_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 300
    while time.time() < deadline and generated(cut) < 2 and proc.poll() is None:
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = generated(cut)
    assert 2 <= before < 14, "the kill should land mid-run"
    assert not (cut / "summary.json").exists()

    # The resumed run (other batch size: other batch composition) generates only what is missing.
    resume = demo_cmd(cut, benchmarks_dir, "--batch-size", "6", *evaluation_only)
    result = subprocess.run(resume, cwd=root, env=cut_env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "items already generated" in result.stderr
    assert generated(cut) == 14  # 7 benchmarks (6 files + the rare-disease subset) x 2 items
    for name in benchmarks:
        pd.testing.assert_frame_equal(
            pd.read_parquet(cut / "eval" / "base" / "details" / f"{name}.parquet"),
            pd.read_parquet(full / "eval" / "base" / "details" / f"{name}.parquet"),
        )
    # Running the finished job again publishes nothing new.
    again = subprocess.run(resume, cwd=root, env=cut_env, capture_output=True, text=True)
    assert again.returncode == 0 and "already published with this content" in again.stderr
    # The token canary: in no output, log, card, config, result or published file of either run.
    for run in (done, result, again):
        assert canary not in run.stdout + run.stderr
    leaked = [p for p in tmp_path.rglob("*") if p.is_file() and canary.encode() in p.read_bytes()]
    assert not leaked, leaked


def test_changed_settings_are_refused_on_resume(tmp_path, benchmarks_dir):
    (tmp_path / "run.json").write_text(json.dumps({"model": "other"}))
    code = main(
        ["demo", "--chat", "true", "--output_dir", str(tmp_path), "--benchmarks-dir", str(benchmarks_dir)]
    )
    assert code == 2


def test_a_step_is_skipped_with_null_on_the_command_line_as_in_yaml():
    argv = ["--config", "recipes/demo.yaml", "--labeling", "null", "--keyed-eval", "None"]
    (cfg,) = parse_config([RunSettings], argv)
    assert cfg.labeling is None and cfg.keyed_eval is None and cfg.synthesis["num_questions"] == 12
    (cfg,) = parse_config([RunSettings], ["--config", "recipes/demo.yaml", "--labeling", '{"n": 2}'])
    assert cfg.labeling["n"] == 2 and cfg.labeling["shard_size"] == 6  # a mapping still updates the YAML's
    with pytest.raises(ConfigError, match="--vllm: a mapping is required here, not null"):
        parse_config([RunSettings], ["--config", "recipes/demo.yaml", "--vllm", "null"])


def test_clear_errors(tmp_path, capsys):
    code = main(
        [
            "demo",
            "--chat",
            "true",
            "--output_dir",
            str(tmp_path / "o"),
            "--benchmarks-dir",
            str(tmp_path / "none"),
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "No benchmarks folder" in err and "MEDSSR_BENCHMARKS_DIR" in err
    (tmp_path / "bad.yaml").write_text("modle: embedded\n")
    with pytest.raises(ConfigError, match="unknown config key\\(s\\) modle"):
        config_from_dict([RunSettings], {}, yaml_file=tmp_path / "bad.yaml")
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.startswith("medssr-hub 0.1.0")


@pytest.mark.slow
def test_fresh_machine_demo_scores_the_shipped_benchmark_samples(tmp_path):
    """Neither ../shared nor $MEDSSR_BENCHMARKS_DIR nor the Hub: the demo scores the 50-item samples shipped
    in the package (only the four benchmarks whose licence allows it) and says so."""
    env = {k: v for k, v in os.environ.items() if k != "MEDSSR_BENCHMARKS_DIR"}
    env.update(MEDSSR_HUB_ROOT=str(tmp_path / "hub"), HF_HUB_OFFLINE="1")
    cmd = [sys.executable, "-m", "medssr_hub.cli", "demo", "--chat", "true", "--output_dir", "out", *SMALL]
    done = subprocess.run([*cmd, "--num-samples", "1"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    (per,) = summary["evaluation"].values()
    assert set(per) == {"medqa", "medmcqa", "pubmedqa", "mmlu", "raredis_catalogue"}
    assert all(b["items"] == 2 for b in per.values()) and per["raredis_catalogue"]["rare"]
    assert all(per[name]["source"].startswith("medssr-hub sample: ") for name in ("medqa", "mmlu"))
    assert "Benchmark items from: medssr-hub sample: medmcqa.json" in done.stdout
    assert "Wall time: " in done.stdout
    rows = json.loads((tmp_path / "out" / "leaderboard" / "leaderboard.json").read_text())["rows"]
    assert len(rows) == 1 and rows[0]["average"] is not None and rows[0]["rare_disease"] is not None
