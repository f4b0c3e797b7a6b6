"""One GPU, one shot: a stage 1 step of the shipped Qwen3-8B-Base config, and the embedded backend's batched
generation, on a random-weight model of Qwen3-8B's shape. Run by `bench/gpu_smoke.sh` (which sets up a bare
GPU machine); `--tiny --device cpu` rehearses the same code on a CPU with a 2-layer model (tests).

What it measures: peak GPU memory, the step's time, and the rollouts' and the embedded backend's tokens per
second. What it does not: DeepSpeed (ZeRO-2 shards optimizer state over 8 GPUs; one GPU holds all of it, in
fp32 master weights, 16 bytes a parameter), vLLM rollouts, or anything about quality (random weights).

The model keeps Qwen3-8B's width and as many of its layers as one card holds by arithmetic: 16 bytes a
parameter (fp32 weights, gradients, AdamW's moments) within FIT_SHARE of the card's memory, the rest left
for activations, rollouts and the CUDA context. An out-of-memory error still retries at half the layers,
with the failed attempt's memory freed first. OUT/gpu_smoke.json is written after every phase, so a later
failure keeps what was measured.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import time
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
FIT_SHARE = 0.7  # of the card's memory for the 16 bytes a parameter of training state
TRAIN_BYTES_PER_PARAM = 16


def parameters_per_layer(shape: dict) -> tuple[int, int]:
    """(parameters outside the decoder layers, parameters of one layer), counted on meta tensors."""
    from transformers import AutoConfig

    from medssr_hub.training.checkpoints import config_parameters

    counts = [config_parameters(AutoConfig.for_model(**{**shape, "num_hidden_layers": n})) for n in (1, 2)]
    per_layer = counts[1] - counts[0]
    return counts[0] - per_layer, per_layer


def layers_that_fit(shape: dict, memory_bytes: int) -> int:
    """The most layers (at most the config's) whose training state fits FIT_SHARE of the card."""
    base, per_layer = parameters_per_layer(shape)
    budget = FIT_SHARE * memory_bytes / TRAIN_BYTES_PER_PARAM
    return max(1, min(shape["num_hidden_layers"], int((budget - base) // per_layer)))


def build_model(
    config_file: Path, tokenizer_dir: Path, out: Path, layers: int | None, tiny: bool, device: str
):
    """A random-weight model of the config's shape, saved in bf16 with the carried tokenizer."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    shape = json.loads(config_file.read_text())
    if tiny:
        shape.update(hidden_size=64, intermediate_size=128, num_attention_heads=4, num_key_value_heads=2,
                     head_dim=16, num_hidden_layers=2)  # fmt: skip
    if layers:
        shape["num_hidden_layers"] = layers
    special = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id}
    config = AutoConfig.for_model(**{**shape, **special, "pad_token_id": tokenizer.pad_token_id})
    t0 = time.perf_counter()
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    params = sum(p.numel() for p in model.parameters())
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    del model
    _free(device)
    return params, time.perf_counter() - t0


def _free(device: str) -> None:
    """Hand back what nothing references any more: Python's cycles first (a failed step's trainer and
    model), then CUDA's cache."""
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _write(summary: dict, out: Path) -> None:
    """The summary so far, after each phase: a later failure keeps what was measured."""
    (out / "gpu_smoke.json").write_text(json.dumps(summary, indent=2))


def _peak_gb(device: str) -> float | None:
    return round(torch.cuda.max_memory_allocated() / 2**30, 1) if device.startswith("cuda") else None


def training_data(path: Path, count: int) -> Path:
    """Stage 1 rows: the packaged MedQA subset, its gold letter standing in for the pseudo-label."""
    from medssr_hub.paths import package_data

    rows = json.loads((package_data("benchmarks") / "medqa.json").read_text())[:count]
    path.write_text(json.dumps([{**r, "label": r["gold"]} for r in rows]))
    return path


def stage1_step(model_dir: Path, data: Path, out: Path, device: str, completion_tokens: int) -> dict:
    """One step of recipes/qwen3-8b-base/stage1.yaml through the project's own launcher code, with only the
    model, data, sizes and outputs swapped (transformers rollouts: no vLLM on the GPU image)."""
    from medssr_hub.paths import recipe_path
    from medssr_hub.training import grpo

    config = yaml.safe_load(recipe_path("recipes/qwen3-8b-base/stage1.yaml").read_text())
    config.update(
        model_name_or_path=str(model_dir), model_revision=None, dataset_name=str(data), dataset_revision=None,
        use_vllm=False, max_steps=1, per_device_train_batch_size=8, gradient_accumulation_steps=1,
        num_generations=8, max_completion_length=completion_tokens, save_strategy="no", push_checkpoints=False,
        publish_repo=None, report_to=[], output_dir=str(out / "stage1"), allow_eval_overlap=True,
        use_cpu=device == "cpu", fresh_start=True,
    )  # fmt: skip
    config_file = out / "stage1.yaml"
    config_file.write_text(yaml.safe_dump(config))
    _free(device)
    t0 = time.perf_counter()
    trainer = grpo.main(*grpo.parse_args(["--config", str(config_file)]))
    wall = time.perf_counter() - t0
    logs = {k: v for h in trainer.state.log_history for k, v in h.items()}
    mean_length, step_s = logs.get("completions/mean_length"), logs.get("step_time")
    result = {
        "weights dtype": str(next(trainer.model.parameters()).dtype).removeprefix("torch."),
        "train_runtime_s": round(logs.get("train_runtime", float("nan")), 1),
        "wall_with_load_and_final_save_s": round(wall, 1),
        "peak_gpu_memory_gib": _peak_gb(device),
        "step_time_s": step_s,
        "completion_mean_tokens": mean_length,
    }
    if mean_length and step_s:  # 8 completions a step: rollouts, scoring, backward and optimizer together
        result["step_completion_tokens_per_s"] = round(8 * mean_length / step_s, 1)
    del trainer
    _free(device)
    return result


def embedded_generation(model_dir: Path, device: str, prompts: int, samples: int, tokens: int) -> dict:
    from medssr_hub.generation import SamplingParams
    from medssr_hub.generation.embedded import EmbeddedBackend
    from medssr_hub.paths import package_data

    t0 = time.perf_counter()
    backend = EmbeddedBackend(model=str(model_dir), batch_size=prompts * samples, device=device)
    load_s = time.perf_counter() - t0
    rows = json.loads((package_data("benchmarks") / "medqa.json").read_text())[:prompts]
    params = SamplingParams(n=samples, temperature=0.6, top_p=0.95, top_k=20, max_tokens=tokens, seed=1)
    _free(device)
    t0 = time.perf_counter()
    backend.generate([r["question"] for r in rows], params, progress=False)
    seconds = time.perf_counter() - t0
    return {
        "dtype": str(backend.model.dtype).removeprefix("torch."),
        "device": str(backend.model.device),
        "load_s": round(load_s, 1),
        "sequences": prompts * samples,
        "completion_tokens": backend.stats.completion_tokens,
        "seconds": round(seconds, 1),
        "tokens_per_s": round(backend.stats.completion_tokens / seconds, 1),
        "peak_gpu_memory_gib": _peak_gb(device),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "bench" / "qwen3-8b-config.json")
    parser.add_argument("--tokenizer", type=Path, default=ROOT / ".smoke" / "tokenizer")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "/tmp/medssr-smoke")))
    parser.add_argument("--work", type=Path, default=Path("/tmp/medssr-smoke-work"))
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--layers", type=int, default=None, help="fewer layers than the config's (memory)")
    parser.add_argument("--tiny", action="store_true", help="a 2-layer, 64-wide model: CPU rehearsal")
    parser.add_argument("--completion-tokens", type=int, default=256)
    parser.add_argument("--gen-prompts", type=int, default=32)
    parser.add_argument("--gen-samples", type=int, default=4)
    parser.add_argument("--gen-tokens", type=int, default=128)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    args.work.mkdir(parents=True, exist_ok=True)
    summary: dict = {"device": args.device, "torch": torch.__version__}
    if args.device.startswith("cuda"):
        summary["gpu"] = torch.cuda.get_device_name()
    model_dir = args.work / "model"
    layers = args.layers
    if layers is None and not args.tiny and args.device.startswith("cuda"):
        total = torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory
        layers = layers_that_fit(json.loads(args.config.read_text()), total)
        summary["sizing"] = {"gpu_memory_gib": round(total / 2**30, 1), "layers_that_fit": layers}
    _write(summary, args.out)
    for _ in range(3):  # out of memory anyway: half the layers, the failed attempt freed first
        failed = None
        try:
            params, build_s = build_model(
                args.config, args.tokenizer, model_dir, layers, args.tiny, args.device
            )
            summary["model"] = {
                "parameters": params,
                "layers": layers or "as configured",
                "build_and_save_s": round(build_s, 1),
            }
            _write(summary, args.out)
            data = training_data(args.work / "train.json", 16)
            summary["stage1_step"] = stage1_step(
                model_dir, data, args.work, args.device, args.completion_tokens
            )
        except torch.OutOfMemoryError as e:
            failed = {"layers": layers, "error": str(e).splitlines()[0]}
        # Outside the handler: the exception and its traceback, which hold the model, are gone by now.
        shutil.rmtree(args.work / "stage1" / "final", ignore_errors=True)  # the step's final save: not needed
        _free(args.device)
        if failed is None:
            break
        summary.setdefault("out_of_memory", []).append(failed)
        _write(summary, args.out)
        layers = max(1, (layers or json.loads(args.config.read_text())["num_hidden_layers"]) // 2)
    _write(summary, args.out)
    summary["embedded_generation"] = embedded_generation(
        model_dir, args.device, args.gen_prompts, args.gen_samples, args.gen_tokens
    )
    _write(summary, args.out)
    print(json.dumps(summary, indent=2))
    return 0 if "stage1_step" in summary else 1


if __name__ == "__main__":
    raise SystemExit(main())
