"""The paper path, rehearsed: every paper-scale config, in data order, through to a publish on a local hub.

Only the model (the embedded SmolLM2 instead of Qwen3-8B-Base), the server URL (a llama.cpp server on
127.0.0.1 serving the embedded model, standing in for TGI, with its own constraint dialect; the labeling
and evaluation configs also run against a real vLLM server in test_vllm.py), the hub
(a local folder instead of the Hub), the device (`use_cpu`: transformers refuses bf16 without a GPU unless
told) and the sizes (counts, steps, tokens, and the agreement band that n votes allow) are overridden. The rehearsal publishes the two datasets the configs expect from their
users first: the seed questions and the gold-keyed stage 2 set.
"""

import json
import os
import subprocess
import sys

import pytest

from medssr_hub.hub import LocalHub
from medssr_hub.training import launch_command
from tests.support.paths import ROOT
from tests.support.servers import RawFiles

# What this rehearsal cannot run without a GPU; the configs ask for it and the code path around it runs.
NOT_REHEARSED = {
    "use_vllm: true, vllm_mode: server (trl vllm-serve)": "weights sync over NCCL, GPUs only: the rehearsal sets use_vllm false and checks the refusal; colocated vLLM rollouts are tested in test_training",
    "accelerate_configs/zero2.yaml, zero3.yaml (DeepSpeed)": "training runs as one accelerate process here",
    "Qwen3-8B-Base": "the embedded SmolLM2-135M stands in; the server serves its GGUF",
}  # fmt: skip

pytestmark = [pytest.mark.slow, pytest.mark.server]


def cli(*args, env):
    done = subprocess.run(
        [sys.executable, "-m", "medssr_hub.cli", *args], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, (args[:3], done.stderr[-4000:])
    return done


def train(recipe, config, *args, env):
    done = subprocess.run(
        launch_command(recipe, config, *args), cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, (config, done.stdout[-3000:], done.stderr[-3000:])
    return done


def test_paper_configs_in_data_order(tmp_path, llama_server, benchmarks_dir):
    hub_root = tmp_path / "hub"
    # Not HF_HUB_OFFLINE: huggingface_hub 2 then refuses its InferenceClient even to 127.0.0.1 (README).
    env = {**os.environ, "MEDSSR_HUB_ROOT": str(hub_root), "PYTHONUNBUFFERED": "1"}
    server = json.dumps({"base_url": llama_server.url, "constraint": "gbnf"})  # llama.cpp's dialect

    # The users' own data, published first: seed questions, and gold-keyed questions for stage 2.
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    medqa = json.loads((benchmarks_dir / "medqa.json").read_text())
    (seeds / "train.json").write_text(json.dumps(medqa[-20:]))
    cli(
        "publish",
        str(seeds),
        "--repo-id",
        "ORG/medssr-seeds",
        "--version",
        "v1.0.0",
        "--hub",
        "local",
        env=env,
    )
    cli(
        "synthesize", "--config", "recipes/synthesis/config_heldout.yaml", "--num_questions", "8",
        "--publish_repo", "ORG/medqa-train", "--publish_version", "v1.0.0", "--hub", "local",
        "--output_dir", str(tmp_path / "gold"), env=env,
    )  # fmt: skip

    # 1. Synthesis with an LLM generator behind a server (config_tgi.yaml); chunks of 2, since this server
    # answers one request at a time: a branch stops as soon as its quota is filled.
    cli(
        "synthesize", "--config", "recipes/synthesis/config_tgi.yaml", "--endpoint", server, "--hub", "local",
        "--num_questions", "3", "--max_tokens", "400", "--chunk_size", "2", "--max_attempts_per_question", "6",
        "--output_dir", str(tmp_path / "synthesis"), env=env,
    )  # fmt: skip
    hub = LocalHub(hub_root)
    assert "v1.0.0" in hub.versions("ORG/medssr-synthetic")
    # 2. Pseudo-labels by the base-model policy on /v1/completions (config_qwen3.yaml).
    labeler = json.dumps({"base_url": llama_server.url, "tokenizer": "embedded"})
    cli(
        "label", "--config", "recipes/labeling/config_qwen3.yaml", "--endpoint", labeler, "--model", "embedded",
        "--hub", "local", "--n", "2", "--max_tokens", "24", "--band", "0", "1",
        "--output_dir", str(tmp_path / "labels"), env=env,
    )  # fmt: skip
    assert "v1.0.0" in hub.versions("ORG/medssr-synthetic-labeled")
    # 3-4. Stage 1 then stage 2 (qwen3-8b-base/*.yaml), each as `accelerate launch` of the recipe.
    sizes = [
        "--model_name_or_path", "embedded", "--max_steps", "1", "--per_device_train_batch_size", "2",
        "--gradient_accumulation_steps", "1", "--num_generations", "2", "--max_completion_length", "16",
        "--save_steps", "1", "--use_cpu", "true",  # no GPU: transformers refuses bf16 unless told it is CPU
    ]  # fmt: skip
    # Server-mode vLLM rollouts need CUDA: on this machine the recipe stops with one line, before training.
    refused = subprocess.run(
        launch_command("stage1.py", "qwen3-8b-base/stage1.yaml", *sizes, "--output_dir", str(tmp_path / "s0")),
        cwd=ROOT, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert refused.returncode != 0 and "vllm_mode server syncs weights" in refused.stderr
    sizes += ["--use_vllm", "false"]
    train("stage1.py", "qwen3-8b-base/stage1.yaml", *sizes, "--output_dir", str(tmp_path / "s1"), env=env)
    assert set(hub.versions("medssr-hub/qwen3-8b-base-medssr-stage1", "model")) == {"v1.0.0"}
    stage2 = [s for s in sizes if s != "embedded" and s != "--model_name_or_path"]
    train("stage2.py", "qwen3-8b-base/stage2.yaml", *stage2, "--output_dir", str(tmp_path / "s2"), env=env)
    card = (hub.pull("medssr-hub/qwen3-8b-base-medssr-stage2", "v1.0.0", "model") / "README.md").read_text()
    assert (
        "base_model: medssr-hub/qwen3-8b-base-medssr-stage1" in card and "`ORG/medqa-train` @ `main`" in card
    )
    # 5. Evaluation of the stage 2 model behind the server (config_paper.yaml): raw completions, official
    # rule, the paper's own test files (served here from the shared copies, which are byte-identical).
    raw = RawFiles(benchmarks_dir)
    env = {**env, "MEDSSR_OFFICIAL_BASE_URL": raw.url, "MEDSSR_HUB_CACHE": str(tmp_path / "cache")}
    cli(
        "evaluate", "--config", "recipes/evaluation/config_paper.yaml", "--endpoint", json.dumps({"base_url": llama_server.url}),
        "--max_items", "2", "--num_samples", "2", "--max_tokens", "16", "--output_dir", str(tmp_path / "eval"),
        env=env,
    )  # fmt: skip
    raw.close()
    results = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert results["extraction"] == "official" and len(results["benchmarks"]) == 6
    assert {b["source"] for b in results["benchmarks"].values()} == {
        f"tdlhl/MedSSR@e560f5a:data/test_short_{p.stem}.json" for p in benchmarks_dir.glob("*.json")
    }
    # tdlhl/RareDis-Sub is on the Hub only, and this run is offline; the shared folder has no Lancet, NEJM
    # or MedXpertQA file to serve.
    assert set(results["unavailable"]) == {"raredis", "lancet", "nejm", "medxpertqa"}
