"""The paper-scale launch path, checked on CPU where a CPU can check it (issue 22): the precision the recipes
train in, rollouts that stop at the next question, checkpoints that fit the disk and publish off the
training ranks' path, the embedded backend's on-device sampling, and the Slurm launch commands."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from medssr_hub.answers import NEXT_QUESTION
from medssr_hub.training.grpo import parse_args
from medssr_hub.training.precision import weights_dtype
from medssr_hub.training.stops import (
    MedSSRGRPOTrainer,
    add_stop_kwargs,
    end_at_stop,
    rollout_stops,
)
from tests.support.paths import ROOT

PAPER_STAGE1 = ["--config", "recipes/qwen3-8b-base/stage1.yaml", "--model_name_or_path", "embedded"]


def _changed_fraction(model_dir, dtype: str, lr: float) -> float:
    """One AdamW step at `lr` on a language-modelling loss, the compute in bf16 autocast (as `bf16: true`
    runs it): the fraction of one projection's weights that changed."""
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, dtype))
    weight = model.model.layers[3].mlp.down_proj.weight
    before = weight.detach().clone()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    ids = torch.tensor([[1, 504, 3458, 314, 253, 4096, 30, 2118, 1410, 28, 330, 30]])
    # enable_grad: lighteval, imported by earlier tests in this process, turns autograd off globally.
    with torch.enable_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
    optimizer.step()
    return (weight.detach() != before).float().mean().item()


def test_the_shipped_bf16_recipe_trains_fp32_master_weights_that_a_tiny_update_changes(
    embedded_dir, monkeypatch
):
    monkeypatch.delenv("ACCELERATE_USE_DEEPSPEED", raising=False)
    script_args, training_args, model_args = parse_args([*PAPER_STAGE1, "--use_cpu", "true"])
    assert model_args.dtype == "bfloat16" and training_args.bf16 and training_args.learning_rate == 1e-6
    dtype = weights_dtype(model_args, training_args)
    assert dtype == "float32"  # one GPU, DDP or FSDP: nothing else keeps master weights
    learned = _changed_fraction(embedded_dir, dtype, training_args.learning_rate)
    frozen = _changed_fraction(embedded_dir, model_args.dtype, training_args.learning_rate)
    # Adam moves every weight by about lr: fp32 holds that; bf16 rounds nearly all of it away.
    assert learned > 0.95, learned
    assert frozen < 0.2, frozen

    # DeepSpeed keeps its own fp32 masters, and LoRA trains fp32 adapters: both load the config's dtype.
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    assert weights_dtype(model_args, training_args) == "bfloat16"
    monkeypatch.delenv("ACCELERATE_USE_DEEPSPEED")
    model_args.use_peft = True
    assert weights_dtype(model_args, training_args) == "bfloat16"


# -- rollouts stop at the next question ------------------------------------------------------------------
# Two worked questions, then one to answer: SmolLM2 answers it greedily ("The answer is C.") and goes on to
# invent a fourth question with its own answer, which the last-answer rule would then score.
FEW_SHOT = (
    "Question: What is 2+2?\nA. 3\nB. 4\nThe answer is B.\n\n"
    "Question: Which organ pumps blood?\nA. Heart\nB. Liver\nThe answer is A.\n\n"
    "Question: Which vitamin deficiency causes scurvy?\nA. Vitamin C\nB. Vitamin D\n"
)


def test_rollout_stops_follow_the_template_and_the_engine():
    script_args, training_args, _ = parse_args([*PAPER_STAGE1, "--use_cpu", "true"])
    assert rollout_stops(script_args) == NEXT_QUESTION  # qwen3-8b-base: chat false
    script_args.chat = True
    assert rollout_stops(script_args) == ()
    script_args.chat, script_args.stop_at_next_question = False, False
    assert rollout_stops(script_args) == ()
    assert training_args.mask_truncated_completions  # the paper configs drop truncated completions
    add_stop_kwargs(training_args, NEXT_QUESTION)  # use_vllm: true in the recipe
    assert training_args.generation_kwargs["stop"] == list(NEXT_QUESTION)
    training_args.generation_kwargs, training_args.use_vllm = None, False
    add_stop_kwargs(training_args, NEXT_QUESTION)
    assert training_args.generation_kwargs == {"stop_strings": list(NEXT_QUESTION)}


def test_a_rollout_that_goes_on_to_a_new_question_is_cut_there_and_ends_finished(embedded_dir, tmp_path):
    from datasets import Dataset
    from trl import GRPOConfig

    def never(completions, **kwargs):
        return [0.0] * len(completions)

    def rollout(stops):
        args = GRPOConfig(
            output_dir=str(tmp_path), use_cpu=True, per_device_train_batch_size=2, num_generations=2,
            max_completion_length=60, top_k=1, report_to=[], bf16=False,
            generation_kwargs={"stop_strings": list(stops)} if stops else None,
        )  # fmt: skip
        trainer = MedSSRGRPOTrainer(
            model=str(embedded_dir),
            args=args,
            reward_funcs=never,
            train_dataset=Dataset.from_list([{"prompt": FEW_SHOT}] * 2),
            stops=stops,
        )
        prompt = trainer.processing_class(FEW_SHOT)["input_ids"]
        ids, _ = trainer._generate_single_turn([prompt], None, {}, 1)
        return trainer, ids[0]

    trainer, free = rollout(())
    tokenizer = trainer.processing_class
    text = tokenizer.decode(free, skip_special_tokens=True)
    assert text.count("The answer is") >= 2 and "\nQuestion:" in text  # it answers its own question too
    assert free[-1] not in trainer.eos_token_ids  # ran to the limit: TRL counts it truncated

    trainer, stopped = rollout(NEXT_QUESTION)
    text = tokenizer.decode(stopped, skip_special_tokens=True)
    assert text.endswith("\nQuestion:") and text.count("The answer is") == 1, text
    assert stopped[-1] in trainer.eos_token_ids  # finished, so mask_truncated_completions keeps it
    assert len(stopped) < len(free) and trainer.stopped_completions == 1
    logged = [
        v for mode in ("train", "eval") for v in trainer._metrics[mode]["medssr/stopped_at_next_question"]
    ]
    assert logged == [1.0]  # logged as the share of the batch's completions that stopped


def test_end_at_stop_cuts_after_the_stop_keeps_finished_rows_and_drops_trailing_pads(embedded_dir):
    from medssr_hub.modeling import load_tokenizer

    tokenizer = load_tokenizer(str(embedded_dir))
    eos = tokenizer.eos_token_id
    answer = tokenizer("The answer is C.")["input_ids"]
    tail = tokenizer("\nQuestion: Which organ? The answer is A.")["input_ids"]
    finished = [*answer, eos]
    ids, logprobs, stopped = end_at_stop(
        [[*answer, *tail], finished, answer],
        [[-0.5] * len(answer + tail), [-0.1] * len(finished), [-0.2] * len(answer)],
        NEXT_QUESTION,
        tokenizer,
        [eos],
    )
    assert stopped == 1
    assert tokenizer.decode(ids[0], skip_special_tokens=True) == "The answer is C.\nQuestion:"
    assert ids[0][-1] == eos and logprobs[0][-1] is None and len(logprobs[0]) == len(ids[0])
    assert ids[1] == finished and ids[2] == answer  # finished, and truncated without a stop: unchanged


def test_the_embedded_dtype_is_a_config_field_checked_when_read():
    from medssr_hub.errors import ConfigError
    from medssr_hub.labeling.label import LabelConfig
    from medssr_hub.modeling import resolve_device_dtype

    assert LabelConfig(chat=True).dtype == "auto"
    assert resolve_device_dtype("cpu", "auto") == ("cpu", "float32")  # the CPU path is unchanged
    assert resolve_device_dtype("cpu", "bfloat16") == ("cpu", "bfloat16")
    with pytest.raises(ConfigError, match="dtype must be one of"):
        LabelConfig(chat=True, dtype="int8")


# -- checkpoints that fit ---------------------------------------------------------------------------------
QWEN3_8B = ROOT / "bench" / "qwen3-8b-config.json"
TB = 1e12


def _qwen3_8b_folder(folder: Path) -> Path:
    """A folder holding Qwen3-8B's config alone (bench/qwen3-8b-config.json): what parameter counts read."""
    folder.mkdir(exist_ok=True)
    (folder / "config.json").write_text(QWEN3_8B.read_text())
    return folder


def _paper_plan(recipe: str, tmp_path, rows: int = 43_000, world: int = 7):
    """The disk plan of a shipped 8B recipe at paper scale: the 43K synthetic questions, the trainer on 7
    GPUs under ZeRO-2, the hub local (its checkpoint copies counted)."""
    from medssr_hub.training.checkpoints import count_parameters, disk_plan, planned_steps

    folder = _qwen3_8b_folder(tmp_path / "qwen3-8b")
    _, training_args, _ = parse_args(
        ["--config", f"recipes/{recipe}", "--use_cpu", "true", "--output_dir", str(tmp_path / "out")]
    )
    script_args = parse_args(["--config", f"recipes/{recipe}", "--use_cpu", "true"])[0]
    params = count_parameters(str(folder))
    assert 8.1e9 < params < 8.3e9  # Qwen3-8B
    steps = planned_steps(training_args, rows, world, training_args.num_generations)
    plan = disk_plan(
        params, "bfloat16", training_args, steps=steps, deepspeed=True, peft=False,
        hub_root=tmp_path / "hub", push_checkpoints=script_args.push_checkpoints,
    )  # fmt: skip
    return plan, steps


def _checkpoints(plan) -> tuple[int, float]:
    """How many checkpoints a plan counts in its output folder, and the GB of one ((0, 0.0): none)."""
    lines = [line for line in plan.lines if "kept checkpoint" in line]
    assert len(lines) <= 1, plan.lines
    if not lines:
        return 0, 0.0
    return int(lines[0].split()[0]), float(lines[0].split(" of ")[1].split(" GB")[0].replace(",", ""))


def test_the_paper_configs_checkpoints_fit_a_1_tb_disk(tmp_path):
    """Stage 1's output stays while stage 2 trains: stage 1 at rest (two kept ZeRO-2 checkpoints of ~131
    GB, the final model, the pushed weights) plus stage 2 at its peak, a third checkpoint saved before the
    oldest is deleted."""
    (first, steps), (second, _) = (
        _paper_plan(f"qwen3-8b-base/{s}.yaml", tmp_path) for s in ("stage1", "stage2")
    )
    assert steps == 768  # 43K prompts / (8 x 8 x 7 completions / 8 per prompt)
    count, size = _checkpoints(second)
    assert count == 3 and "save_total_limit 2, plus the newest" in " ".join(second.lines)
    total = sum(first.needs.values()) - size * 1e9 + sum(second.needs.values())
    assert total < TB, f"{total / 1e9:.0f} GB"


def test_a_deepspeed_checkpoint_counts_16_bytes_a_parameter(tmp_path):
    """bf16 weights (2) + DeepSpeed's bf16 module (2) + fp32 master weights and Adam's moments (12)."""
    plan, _ = _paper_plan("qwen3-8b-base/stage1.yaml", tmp_path)
    _, per_checkpoint = _checkpoints(plan)
    params = 8.19e9  # Qwen3-8B
    assert 15.5 * params / 1e9 < per_checkpoint < 16.5 * params / 1e9, plan.lines


def test_a_resumed_run_counts_only_the_checkpoints_it_adds(tmp_path):
    """The Trainer's own rotation: it saves, then deletes the oldest beyond save_total_limit. A run resumed
    from checkpoint-N finds the last save_total_limit checkpoints on disk and adds only what follows."""
    from transformers import TrainingArguments

    from medssr_hub.training.checkpoints import checkpoint_step, disk_plan

    args = TrainingArguments(output_dir=str(tmp_path), save_steps=1, save_total_limit=2, use_cpu=True)

    def kept(steps: int, resumed: str | None = None) -> int:
        plan = disk_plan(
            1000, "float32", args, steps=steps, deepspeed=False, peft=False, hub_root=None,
            push_checkpoints=False, resumed_step=checkpoint_step(resumed),
        )  # fmt: skip
        return _checkpoints(plan)[0]

    assert [kept(steps) for steps in (1, 2, 3, 9)] == [1, 2, 3, 3]  # 3: two kept, and the newest
    assert kept(2, str(tmp_path / "checkpoint-1")) == 1  # the one-step-then-resume ZeRO-3 test's second run
    assert kept(9, str(tmp_path / "checkpoint-5")) == 1  # two on disk already: the peak adds one
    assert kept(5, str(tmp_path / "checkpoint-5")) == 0  # nothing left to train
    assert checkpoint_step(None) == 0 and checkpoint_step(str(tmp_path / "my-weights")) == 0  # errs high


def test_a_run_that_cannot_fit_its_disk_stops_before_training_naming_the_fix(tmp_path):
    import shutil

    from medssr_hub.errors import ConfigError
    from medssr_hub.training.checkpoints import DiskPlan, check_disk

    free = shutil.disk_usage(tmp_path).free
    plan = DiskPlan()
    plan.add(tmp_path / "out", 0.6 * free, "3 kept checkpoint(s)")
    check_disk(plan)  # fits
    plan.add(tmp_path / "hub", 0.6 * free, "the final model published to the local hub")  # the same disk
    with pytest.raises(ConfigError, match="not enough disk.*save_total_limit.*check_disk: false"):
        check_disk(plan)


def _qwen3_8b_shaped(folder: Path, embedded_dir: Path) -> Path:
    """Qwen3-8B's config beside the embedded tokenizer: what the launch reads before any model loads."""
    _qwen3_8b_folder(folder)
    for f in embedded_dir.iterdir():
        if f.name not in ("config.json", "model.safetensors", "generation_config.json"):
            (folder / f.name).write_bytes(f.read_bytes())
    return folder


def test_a_full_fine_tune_that_cannot_fit_a_process_is_refused_before_the_model_loads(tmp_path, embedded_dir):
    """`accelerate launch` with the DDP config, two processes on this host: an 8B full fine-tune
    (16 bytes a parameter in every process) is refused in one line naming the ZeRO-2 config, before
    any weights load."""
    import json
    import subprocess

    from medssr_hub.training.launch import launch_command

    model = _qwen3_8b_shaped(tmp_path / "qwen3-8b", embedded_dir)
    rows = [{"question": f"Q{i}?\nA. x\nB. y", "answer": "A", "reasoning": "x fits."} for i in range(4)]
    (tmp_path / "r.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    argv = launch_command(
        "sft.py", "smollm2/sft.yaml", "--model_name_or_path", str(model), "--dataset_name",
        str(tmp_path / "r.jsonl"), "--output_dir", str(tmp_path / "out"), num_processes=2,
        accelerate_config="ddp.yaml",
    )  # fmt: skip
    out = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode != 0
    refusals = [line for line in out.stderr.splitlines() if "without sharding needs about" in line]
    assert refusals and all("--config_file recipes/accelerate_configs/zero2.yaml" in r for r in refusals)
    assert "8.19B parameters" in refusals[0] and "shared by 2 processes" in refusals[0], refusals[0]
    assert "Loading weights" not in out.stderr and not (tmp_path / "out" / "model.safetensors").exists()


def test_the_fit_check_leaves_sharded_and_adapter_runs_alone(monkeypatch, tmp_path):
    from types import SimpleNamespace

    from medssr_hub.errors import ConfigError
    from medssr_hub.training.checkpoints import count_parameters
    from medssr_hub.training.precision import check_fits, replica_bytes

    params = count_parameters(str(_qwen3_8b_folder(tmp_path / "qwen3-8b")))
    full, lora = SimpleNamespace(use_peft=False), SimpleNamespace(use_peft=True)
    ddp = SimpleNamespace(deepspeed=None, fsdp=None, use_cpu=True, beta=0.0)
    for name in ("ACCELERATE_USE_DEEPSPEED", "ACCELERATE_USE_FSDP", "ACCELERATE_DEEPSPEED_ZERO_STAGE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")
    with pytest.raises(ConfigError, match="zero2.yaml"):
        check_fits(params, full, ddp)
    assert replica_bytes(params, SimpleNamespace(beta=0.04)) == 20 * params  # TRL's reference model too
    check_fits(params, lora, ddp)  # LoRA: frozen base, small adapters
    check_fits(None, full, ddp)  # unknown size: nothing to refuse
    check_fits(135_000_000, full, ddp)  # SmolLM2 fits
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")  # accelerate launch --config_file zero2.yaml
    check_fits(params, full, ddp)


def test_checkpoints_publish_in_the_background_and_the_end_of_training_waits_for_them(tmp_path):
    """The main process hands each checkpoint to one background thread: `on_save` returns while the
    publish is still copying (here held back until released), and the end of training waits for it."""
    import threading
    import time

    from transformers import TrainerControl, TrainerState, TrainingArguments

    from medssr_hub.hub import HubError, LocalHub, publish
    from medssr_hub.training.hubsync import CardContext, HubCheckpointCallback

    release, started = threading.Event(), threading.Event()

    def slow_publish(*args, **kwargs):  # the real publish, once released: a slow disk or upload
        started.set()
        assert release.wait(60)
        return publish(*args, **kwargs)

    hub = tmp_path / "hub"
    context = CardContext(
        repo_id="org/model", version="v1.0.0", stage="stage1", base_model="base", datasets=[],
        config={}, hub=str(hub), data_fields={},
    )  # fmt: skip
    callback = HubCheckpointCallback(context, publisher=slow_publish)
    args = TrainingArguments(output_dir=str(tmp_path / "out"), report_to=[], use_cpu=True)
    state, control = TrainerState(), TrainerControl()
    for step in (1, 2):
        checkpoint = tmp_path / "out" / f"checkpoint-{step}"
        checkpoint.mkdir(parents=True)
        (checkpoint / "model.safetensors").write_bytes(bytes([step]) * 1024)
        (checkpoint / "optimizer.pt").write_bytes(b"resume only")
        state.global_step = step
        t0 = time.monotonic()
        callback.on_save(args, state, control)
        assert time.monotonic() - t0 < 5  # training goes on while the first publish is held
    assert started.wait(30) and not any(f.done() for _, f in callback.pending)
    with pytest.raises(HubError):  # nothing published yet
        LocalHub(hub).resolve("org/model", "checkpoint-1", "model")
    release.set()
    callback.on_train_end(args, state, control)
    assert not callback.pending
    published = LocalHub(hub).pull("org/model", "checkpoint-2", "model")
    assert (published / "model.safetensors").read_bytes() == bytes([2]) * 1024
    assert not (published / "optimizer.pt").exists()  # weights only
    assert not (tmp_path / "out" / "publish-staging" / "checkpoint-2").exists()


# -- launch commands -------------------------------------------------------------------------------------
SERVER_CONFIGS = ("qwen3-8b-base/stage1", "qwen3-8b-base/stage2", "llama3.1-8b/stage1", "llama3.1-8b/stage2")
COLOCATE_FIELDS = {
    "vllm_mode",
    "vllm_gpu_memory_utilization",
    "vllm_enable_sleep_mode",
    "vllm_server_timeout",
    "vllm_max_model_length",
}


# Per token of KV cache in bf16 (2 x layers x KV heads x head dim x 2 bytes) and bf16 weights, from each
# model's config.json: Qwen3-8B (bench/qwen3-8b-config.json), Llama-3.1-8B (32 layers, 8 KV heads, head dim
# 128, 8.03e9 parameters).
KV_BYTES_PER_TOKEN = {"qwen3-8b-base": 2 * 36 * 8 * 128 * 2, "llama3.1-8b": 2 * 32 * 8 * 128 * 2}
WEIGHT_BYTES = {"qwen3-8b-base": 2 * 8.19e9, "llama3.1-8b": 2 * 8.03e9}


def test_every_recipe_that_starts_vllm_bounds_its_context_within_the_memory_it_gives_the_engine():
    """Unbounded, vLLM reserves KV cache for the model's whole context (131,072 tokens for Llama-3.1: 16 GiB
    for one sequence) and refuses to start at a colocated memory share. Colocated: the trainer's
    `vllm_max_model_length` holds a prompt and the whole completion, and one such sequence fits beside the
    weights in the share the header names as the floor (0.35 of an 80 GB GPU, 2 GB for the engine's own
    buffers). Server: the header's and the Slurm script's `trl vllm-serve` pass `--max_model_len`."""
    import yaml

    recipes = sorted((ROOT / "src" / "medssr_hub" / "data" / "recipes").rglob("*.yaml"))
    starting = [(p, yaml.safe_load(p.read_text())) for p in recipes]
    starting = [(p, c) for p, c in starting if isinstance(c, dict) and c.get("use_vllm")]
    assert len(starting) == 8
    for path, config in starting:
        family = path.parent.name
        if config["vllm_mode"] == "colocate":
            length = config["vllm_max_model_length"]
            assert config["max_completion_length"] + 1024 <= length <= 8192, path
            for share in (config["vllm_gpu_memory_utilization"], 0.35):
                free = share * 80e9 - WEIGHT_BYTES[family] - 2e9
                assert free > length * KV_BYTES_PER_TOKEN[family], (path, share)
        else:
            assert re.search(r"trl vllm-serve --model \S+ --max_model_len 4096 &", path.read_text()), path
    slurm = (ROOT / "recipes" / "slurm" / "train.slurm").read_text()
    assert '--max_model_len "$MAX_MODEL_LEN"' in slurm
    (serve, *_) = _slurm(1, "stage1", "qwen3-8b-base/stage1.yaml")
    assert "--max_model_len 4096" in serve


@pytest.mark.parametrize("name", SERVER_CONFIGS)
def test_each_server_mode_recipe_has_a_colocate_twin_that_differs_only_in_vllm_fields(name):
    import dataclasses

    import yaml

    server = yaml.safe_load((ROOT / "recipes" / f"{name}.yaml").read_text())
    colocate = yaml.safe_load((ROOT / "recipes" / f"{name}_colocate.yaml").read_text())
    assert server["vllm_mode"] == "server" and server["vllm_server_timeout"] >= 900  # a cold 8B start
    assert colocate["vllm_mode"] == "colocate" and colocate["vllm_enable_sleep_mode"] is True
    assert 0 < colocate["vllm_gpu_memory_utilization"] < 0.6
    differ = {k for k in set(server) | set(colocate) if server.get(k) != colocate.get(k)}
    assert differ <= COLOCATE_FIELDS | {"vllm_tensor_parallel_size"}, differ
    # Both parse as the launcher parses them (unknown keys are refused).
    _, training_args, _ = parse_args(["--config", f"recipes/{name}_colocate.yaml", "--use_cpu", "true"])
    assert training_args.vllm_mode == "colocate" and dataclasses.is_dataclass(training_args)


def _slurm(nodes: int, *args: str) -> list[str]:
    import os
    import subprocess

    done = subprocess.run(
        ["bash", str(ROOT / "recipes" / "slurm" / "train.slurm"), *args],
        env={**os.environ, "DRY_RUN": "1", "NODES": str(nodes)}, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_the_slurm_script_parses_and_prints_the_commands_for_one_and_several_nodes():
    import subprocess

    assert subprocess.run(["bash", "-n", str(ROOT / "recipes" / "slurm" / "train.slurm")]).returncode == 0
    # One node, server mode: the server on GPU 7 first, the trainer on 0-6 once /health answers.
    serve, wait, train = _slurm(1, "stage1", "qwen3-8b-base/stage1.yaml")
    assert serve.startswith("[node0] CUDA_VISIBLE_DEVICES=7 trl vllm-serve --model Qwen/Qwen3-8B-Base")
    assert "/health" in wait
    assert "CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6 accelerate launch" in train
    assert (
        "--num_processes 7" in train and "--num_machines 1" in train and "--vllm_server_host node0" in train
    )
    # Three nodes: the last serves with tensor parallelism over its 8 GPUs (vLLM 0.30 refuses data
    # parallelism for dense models), from the base model (the trainer sends the stage 1 weights); the first
    # two train on 16 GPUs; overrides reach the recipe.
    serve, _, *trainers = _slurm(3, "stage2", "qwen3-8b-base/stage2.yaml", "zero3.yaml", "--max_steps", "10")
    assert serve.startswith("[node2]") and "Qwen/Qwen3-8B-Base" in serve
    assert "--tensor_parallel_size 8 --data_parallel_size 1" in serve
    assert [t.split("]")[0] for t in trainers] == ["[node0", "[node1"]
    for rank, line in enumerate(trainers):
        assert f"--machine_rank {rank} --num_processes 16" in line and "--num_machines 2" in line
        assert "zero3.yaml" in line and "--vllm_server_host node2" in line and line.endswith("--max_steps 10")
    # Colocated: every node trains on all 8 GPUs and no server starts.
    lines = _slurm(2, "stage1", "qwen3-8b-base/stage1_colocate.yaml")
    assert len(lines) == 2 and all("--num_processes 16" in x and "vllm-serve" not in x for x in lines)


@pytest.mark.slow
def test_the_gpu_smoke_script_rehearses_on_cpu_with_a_tiny_model_of_the_same_code(tmp_path, embedded_dir):
    """bench/gpu_smoke.py, as bench/gpu_smoke.sh runs it on a GPU, with only the shape (2 layers, 64 wide),
    the device and the sizes swapped: the stage 1 step of the shipped config and the embedded generation."""
    import json
    import os
    import subprocess
    import sys

    from transformers import AutoTokenizer

    assert subprocess.run(["bash", "-n", str(ROOT / "bench" / "gpu_smoke.sh")]).returncode == 0
    AutoTokenizer.from_pretrained(embedded_dir).save_pretrained(tmp_path / "tokenizer")
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gpu_smoke.py"), "--tiny", "--device", "cpu",
         "--tokenizer", str(tmp_path / "tokenizer"), "--out", str(tmp_path / "out"), "--work", str(tmp_path / "work"),
         "--completion-tokens", "8", "--gen-prompts", "2", "--gen-samples", "2", "--gen-tokens", "8"],
        cwd=ROOT, env={**os.environ, "MEDSSR_HUB_ROOT": str(tmp_path / "hub")}, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((tmp_path / "out" / "gpu_smoke.json").read_text())
    step = summary["stage1_step"]
    assert step["weights dtype"] == "float32"  # the shipped bf16 config, outside DeepSpeed: fp32 masters
    assert step["step_time_s"] > 0 and step["completion_mean_tokens"] > 0
    generation = summary["embedded_generation"]
    assert generation["sequences"] == 4 and generation["completion_tokens"] > 0
    assert generation["dtype"] == "float32" and generation["device"] == "cpu"
    assert not (tmp_path / "work" / "stage1" / "final").exists()  # the step's final save is not kept


def test_the_smoke_model_is_sized_by_arithmetic_to_fit_the_card():
    """Qwen3-8B's width with the most layers whose 16 bytes a parameter fit 70% of the card."""
    import importlib.util
    import json

    spec = importlib.util.spec_from_file_location("gpu_smoke", ROOT / "bench" / "gpu_smoke.py")
    smoke = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(smoke)
    shape = json.loads(QWEN3_8B.read_text())
    base, per_layer = smoke.parameters_per_layer(shape)
    assert base + 36 * per_layer == 8_190_735_360  # Qwen3-8B, counted the same way as the disk plan
    for gib, expected in ((80, 13), (141, 27)):  # H100, H200
        layers = smoke.layers_that_fit(shape, gib * 2**30)
        budget = smoke.FIT_SHARE * gib * 2**30
        assert (
            layers == expected
            and (base + layers * per_layer) * 16 <= budget < (base + (layers + 1) * per_layer) * 16
        )


def test_a_training_without_vllm_rollouts_does_not_import_vllm():
    """TRL's GRPOTrainer imports an installed vLLM on its own import; a `use_vllm: false` training process
    (the `medssr-hub stage1|stage2|sft` commands) keeps it out, and the trainer still imports."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from medssr_hub.training.grpo import parse_args\n"
        "from medssr_hub.training.vllm_sync import keep_vllm_out\n"
        f"_, args, _ = parse_args({[*PAPER_STAGE1, '--use_cpu', 'true', '--use_vllm', 'false']!r})\n"
        "keep_vllm_out(args)\n"
        "from medssr_hub.training.stops import MedSSRGRPOTrainer\n"
        "from trl.import_utils import is_vllm_available\n"
        "print(sys.modules['vllm'], is_vllm_available())\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["None", "False"]
    _, args, _ = parse_args([*PAPER_STAGE1, "--use_cpu", "true"])  # the paper recipe rolls out on vLLM
    assert args.use_vllm
    from medssr_hub.training.vllm_sync import keep_vllm_out

    before = sys.modules.get("vllm", "absent")
    keep_vllm_out(args)
    assert sys.modules.get("vllm", "absent") is before


def test_every_training_recipe_header_names_the_launch_it_needs():
    """A recipe's header names its `--config_file` (one that exists), or says why it needs none; an 8B
    model's is a DeepSpeed config (DDP cannot hold an 8B full fine-tune per GPU)."""
    import yaml

    for path in sorted((ROOT / "recipes").glob("*/*.yaml")):
        config = yaml.safe_load(path.read_text())
        if not isinstance(config, dict) or "stage" not in config:
            continue
        header = "".join(line for line in path.read_text().splitlines(keepends=True) if line.startswith("#"))
        named = re.findall(r"--config_file (recipes/accelerate_configs/\S+\.yaml)", header)
        assert named or "No --config_file" in header, path
        assert all((ROOT / f).is_file() for f in named), path
        if "8b" in path.parent.name and not config.get("use_peft"):
            assert named and all("zero" in f for f in named), path


def test_paper_scale_evaluation_uses_every_gpu():
    """The offline config runs one engine per GPU (not tensor parallelism 8); the endpoint config keeps one
    vLLM server's default batch full (1024 sequences on an H100: max_num_seqs, vLLM 0.30's arg_utils)."""
    import yaml

    from medssr_hub.generation.parallel_vllm import split_engines

    offline = yaml.safe_load((ROOT / "recipes" / "evaluation" / "config_paper_vllm.yaml").read_text())
    engines, options = split_engines(offline["vllm"])
    assert engines == 8 and options.get("tensor_parallel_size", 1) == 1 and "engines" not in options
    served = yaml.safe_load((ROOT / "recipes" / "evaluation" / "config_paper.yaml").read_text())
    assert served["endpoint"]["max_concurrency"] * served["num_samples"] == 1024
