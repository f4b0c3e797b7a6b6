"""The steps the demo and the ablation share: the synthetic and held-out data, a training run from a recipe
YAML, one model's evaluation (its settings, the benchmarks and the keyed vignettes), and the leaderboard's
release. `cfg` is a run's settings (`runs.settings.RunSettings`: the demo's config, and the ablation's `run`)."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from medssr_hub.config import config_from_dict, read_yaml
from medssr_hub.errors import ServiceError
from medssr_hub.evaluation.config import EvalConfig
from medssr_hub.evaluation.evaluate import Evaluator
from medssr_hub.evaluation.runs import Run
from medssr_hub.generation import AnswerSettings, backend_options, build_backend
from medssr_hub.hub import StageRelease
from medssr_hub.labeling.label import LabelConfig, run_labeling
from medssr_hub.labeling.release import LabelingSummary
from medssr_hub.paths import BENCHMARKS_ENV, benchmarks_dir, recipe_path
from medssr_hub.records import load_records
from medssr_hub.runs.settings import RunSettings
from medssr_hub.synthesis.catalog import RareDiseaseCatalog
from medssr_hub.synthesis.config import SynthesisConfig
from medssr_hub.synthesis.raredis_subset import SUBSET_FILE, build_subset
from medssr_hub.synthesis.release import SynthesisSummary
from medssr_hub.synthesis.synthesize import run_synthesis
from medssr_hub.training import grpo, sft
from medssr_hub.training.launch import accelerate_launch
from medssr_hub.training.summary import SUMMARY_FILE, TrainingSummary
from medssr_hub.utils import atomic_write_text, read_jsonl

logger = logging.getLogger(__name__)


class TrainingLaunchError(ServiceError):
    pass


def shared_settings(cfg: RunSettings) -> dict[str, Any]:
    """What the generating steps take from the run unless a step sets its own (e.g. synthesis with another
    generator on a server): the hub, the base model and the engine."""
    return {"hub": cfg.hub, "model": cfg.model, "backend": cfg.backend, "vllm": cfg.vllm}


@dataclass(frozen=True)
class DataSteps:
    """Steps 1-2 of a run: synthesis and its pseudo-labels (None where a step is off), and the labeled set
    stage 1 reads, as (repo id, version) (None when labeling does not publish)."""

    synthesis: SynthesisSummary | None = None
    labeling: LabelingSummary | None = None
    labeled: tuple[str, str | None] | None = None


def labeled_data(cfg: RunSettings) -> DataSteps:
    """Steps 1-2: synthesis (published) and its pseudo-labels (published, read back by version)."""
    if not cfg.synthesis:
        return DataSteps()
    out, shared = Path(cfg.output_dir), shared_settings(cfg)
    (syn_cfg,) = config_from_dict(
        [SynthesisConfig], {**shared, **cfg.synthesis, "output_dir": str(out / "synthesis")}
    )
    synthesis = run_synthesis(syn_cfg)
    if not cfg.labeling:
        return DataSteps(synthesis)
    # Read it back the way stage 1 will: from the hub, pinned to its version (else the folder it wrote).
    source = {"input": syn_cfg.output_dir, "output_dir": str(out / "labeling"), "chat": cfg.chat}
    source["extraction"] = cfg.extraction  # votes read as the rewards and the evaluation read answers
    if syn_cfg.publish_repo:
        source["input"], source["input_revision"] = syn_cfg.publish_repo, syn_cfg.publish_version
    (label_cfg,) = config_from_dict([LabelConfig], {**shared, **cfg.labeling, **source})
    labeling = run_labeling(label_cfg)
    if not label_cfg.publish_repo:
        return DataSteps(synthesis, labeling)
    labeled = (label_cfg.publish_repo, label_cfg.publish_version)
    write_distill_file(cfg, labeled)
    return DataSteps(synthesis, labeling, labeled)


def distill_path(cfg: RunSettings) -> Path:
    """The SFT baseline's data (recipes/smollm2/sft.yaml reads the demo's; the ablation's sft row its own)."""
    return Path(cfg.output_dir) / "sft" / "data.jsonl"


def write_distill_file(cfg: RunSettings, labeled: tuple[str, str | None]) -> Path:
    """Each kept labeled question, answered by its pseudo-label, with the first of the policy's own voting
    answers that chose that label as the reasoning (its closing answer sentence cut). Written again from
    the labeling logs on every run, so it never outlives the labels it was made from."""
    texts = {}
    for shard in sorted((Path(cfg.output_dir) / "labeling").rglob("votes-*.jsonl")):
        texts.update({r["id"]: r for r in read_jsonl(shard)})
    rows = []
    for record in load_records(labeled[0], revision=labeled[1], hub=cfg.hub, split="train")[0]:
        label, voted = record.columns.get("label"), texts.get(record.id)
        if not label or not voted:
            continue
        chosen = [t for t, letter in zip(voted["texts"], voted["letters"], strict=True) if letter == label]
        reasoning = re.split(r"(?i)\bthe (?:correct )?answer is\b", chosen[0])[0].strip() if chosen else ""
        if reasoning:
            rows.append(
                {**record.to_row(), "answer": label, "metadata": json.dumps({"reasoning": reasoning})}
            )
    path = distill_path(cfg)
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    logger.info("SFT data: %d labeled questions with the policy's own reasoning in %s", len(rows), path)
    return path


def heldout_data(cfg: RunSettings) -> tuple[SynthesisSummary, tuple[str, str | None]]:
    """Step 4a: stage 2's gold-keyed questions (held-out vignettes), and where stage 2 reads them."""
    (held_cfg,) = config_from_dict(
        [SynthesisConfig],
        {**shared_settings(cfg), **cfg.heldout, "output_dir": str(Path(cfg.output_dir) / "heldout")},
    )
    done = run_synthesis(held_cfg)
    data = (held_cfg.publish_repo, held_cfg.publish_version) if held_cfg.publish_repo else None
    return done, data or (held_cfg.output_dir, None)


def train_stage(
    cfg: RunSettings,
    name: str,
    settings: dict,
    model: tuple[str, str | None],
    data: tuple[str, str | None],
    module=grpo,
) -> TrainingSummary:
    """Steps 3 and 4: GRPO (or SFT: `module`) in this process, or `accelerate launch`ed when the config has
    `launch`, from `model` (repo id or folder, revision) on `data` (dataset repo id
    or folder, revision), read back from the hub by version.

    The recipe YAML (`settings["config"]`) and the demo's overrides become the same config objects
    `recipes/stage1.py` / `stage2.py` parse. A finished run (its final folder exists) is not trained again;
    an interrupted one resumes from its last checkpoint.
    """
    out = Path(cfg.output_dir) / name
    summary_file = out / "final" / SUMMARY_FILE
    recipe = recipe_path(settings.get("config", f"recipes/smollm2/{name}.yaml"))
    overrides = {k: v for k, v in settings.items() if k != "config"}
    overrides.update(
        model_name_or_path=model[0],
        model_revision=model[1],
        chat=cfg.chat,
        extraction=cfg.extraction,  # the reward reads as the votes and the evaluation do
        dataset_name=data[0],
        dataset_revision=data[1],
        output_dir=str(out),
        hub=cfg.hub,
    )
    # parsed here too: a bad field stops the run now, before anything is launched
    script_args, training_args, model_args = config_from_dict(
        module.CONFIG_TYPES, overrides, yaml_file=recipe
    )
    if summary_file.exists():
        pass
    elif cfg.launch:
        launched(module, {**read_yaml(recipe), **overrides}, cfg.launch, out)
    else:
        module.main(script_args, training_args, model_args)
    return TrainingSummary.read(out / "final", script_args.publish_repo, script_args.publish_version)


def launched(module, values: dict[str, Any], launch: dict[str, Any], out: Path) -> None:
    """A training run as its own `accelerate launch` (all of a node's GPUs, DeepSpeed or FSDP), from the
    recipe's values and the run's overrides written as one YAML next to its output. A resumed run launches
    again and resumes from its last checkpoint."""
    out.mkdir(parents=True, exist_ok=True)
    config = out / "launch_config.yaml"
    atomic_write_text(config, yaml.safe_dump(values, sort_keys=False))
    accelerate_config = launch.get("config_file")
    command = accelerate_launch(
        ["-m", "medssr_hub.cli", "sft" if module is sft else "stage1", "--config", str(config)],
        launch.get("num_processes", 1),
        recipe_path(accelerate_config) if accelerate_config else None,
    )
    logger.info("Launching %s", " ".join(command[1:]))
    proc = subprocess.run(
        command, env={**os.environ, **{k: str(v) for k, v in launch.get("env", {}).items()}}
    )
    if proc.returncode:
        raise TrainingLaunchError(
            f"{out.name}: the launched training exited with {proc.returncode} (its log is above)"
        )


def benchmark_files(cfg: RunSettings) -> list[str]:
    """Every benchmark file in the folder (the shipped samples when none is configured)."""
    bench_dir = benchmarks_dir(cfg.benchmarks_dir)
    if bench_dir is None:
        raise FileNotFoundError(
            f"No benchmarks folder: set {BENCHMARKS_ENV} (or benchmarks_dir in the config) to a folder of "
            "MedSSR-format JSON files (id, question with 'A. ...' option lines, gold)"
        )
    files = sorted(str(p) for p in bench_dir.glob("*.json"))
    if not files:
        raise FileNotFoundError(f"{bench_dir} holds no benchmark JSON files")
    return files


def rare_subset_file(cfg: RunSettings) -> str:
    """The catalogue-matched rare-disease items of every benchmark file, built once into the output."""
    out = Path(cfg.output_dir) / "raredis"
    if not (out / SUBSET_FILE).exists():
        benchmarks = [(Path(f).stem, load_records(f)[0]) for f in benchmark_files(cfg)]
        stats = build_subset(benchmarks, out, RareDiseaseCatalog())
        logger.info("Rare-disease subset: %d catalogue-matched items %s", stats["items"], stats["selected"])
    return str(out / SUBSET_FILE)


def eval_config(
    cfg: RunSettings, folder: str, model: str, name: str, benchmarks: list[str] | None = None
) -> EvalConfig:
    """Step 5's settings for one model: every benchmark file in the folder, a few items each, and the
    catalogue-matched rare-disease subset; or (step 5a) the keyed vignettes, all of them."""
    keyed = benchmarks is not None
    if benchmarks is None:
        benchmarks = benchmark_files(cfg) + ([rare_subset_file(cfg)] if cfg.rare_subset else [])
    settings = AnswerSettings.taken_from(cfg) | {"model": model}  # the run's engine, chat and sampling
    if keyed:
        settings["max_tokens"] = cfg.keyed_max_tokens or cfg.max_tokens
    return EvalConfig(
        **settings,
        display_name=name,
        benchmarks=benchmarks,
        max_items=None if keyed else cfg.items_per_benchmark,
        extraction=cfg.extraction,
        num_samples=(cfg.keyed_num_samples or cfg.num_samples) if keyed else cfg.num_samples,
        output_dir=str(Path(cfg.output_dir) / ("eval-keyed" if keyed else "eval") / folder),
    )


def base_backend(cfg: RunSettings):
    """The base model's backend, built once for every evaluation of the base model."""
    return build_backend(
        cfg.backend, model=cfg.model, hub=cfg.hub, batch_size=cfg.batch_size,
        torch_threads=cfg.torch_threads, options=backend_options(cfg),
    )  # fmt: skip


@dataclass
class Evaluated:
    """One model's step 5: its benchmark run, and its keyed vignettes' results when they were evaluated."""

    run: Run
    out: Path  # the benchmarks' evaluation folder
    keyed: dict[str, Any] | None
    keyed_out: Path | None


def evaluate_model(
    cfg: RunSettings, folder: str, model: str, name: str, keyed: str | None, backend=None
) -> Evaluated:
    """Step 5 for one model: the benchmarks, then (when `keyed` names their file) the keyed vignettes, both
    on one backend: `backend` when given (the base model's, its caller's to close), else the one the first
    evaluation builds, closed here so the next model's engine fits."""
    evaluator = Evaluator(eval_config(cfg, folder, model, name), backend=backend)
    try:
        run = Run.from_folder(evaluator.out, evaluator.run())
        if keyed is None:
            return Evaluated(run, evaluator.out, None, None)
        keyed_cfg = eval_config(cfg, folder, model, name, benchmarks=[keyed])
        keyed_eval = Evaluator(keyed_cfg, backend=evaluator.backend)
        return Evaluated(run, evaluator.out, keyed_eval.run(), keyed_eval.out)
    finally:
        evaluator.close()


def leaderboard_release(cfg: RunSettings, settings: dict[str, Any] | None = None) -> StageRelease:
    """The run's leaderboard release, checked now (before the first step): a version published from other
    settings stops the run here, not after hours of training. It records `settings` (the ablation's: its
    run settings and its rows), by default the run settings."""
    release = StageRelease.of(cfg, settings=settings)
    release.check()
    return release
