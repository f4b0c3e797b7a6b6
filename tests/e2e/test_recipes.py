"""The shipped offline recipes, run in data order through the CLI: each reads the previous one's published
repo id and version (only sizes, and the training recipes' data, are overridden), and a model that stage 1 publishes is named by repo id and
version in synthesis, labeling, stage 2 and evaluation alike."""

import json

import pytest
import torch
from datasets import load_dataset
from safetensors.torch import load_file

from medssr_hub.cli import main
from medssr_hub.config import config_from_dict
from medssr_hub.hub import LocalHub
from medssr_hub.labeling.label import LabelConfig, Labeler
from medssr_hub.records import load_records
from medssr_hub.schema import LABELED_FEATURES, SYNTHETIC_FEATURES
from medssr_hub.synthesis.config import SynthesisConfig
from medssr_hub.synthesis.synthesize import Synthesizer
from tests.support.paths import ROOT

STAGE1 = ("medssr-hub/smollm2-medssr-stage1", "v0.1.0")
TRAIN_SIZES = ["--max_steps", "1", "--per_device_train_batch_size", "4", "--max_completion_length", "16"]


def ok(*argv):
    assert main(list(argv)) == 0, argv


@pytest.mark.slow
def test_offline_recipes_chain_in_data_order(tmp_path, monkeypatch, benchmarks_dir, embedded_dir):
    monkeypatch.setenv("MEDSSR_HUB_ROOT", str(tmp_path / "hub"))
    monkeypatch.setenv("MEDSSR_BENCHMARKS_DIR", str(benchmarks_dir))
    import lighteval.models.transformers.transformers_model  # noqa: F401  turns autograd off, as in a full run

    out = tmp_path / "outputs"
    hub = LocalHub(tmp_path / "hub")

    ok("synthesize", "--config", "recipes/synthesis/config_demo.yaml", "--num_questions", "6",
       "--output_dir", str(out / "synthesis"))  # fmt: skip
    ok("label", "--config", "recipes/labeling/config_demo.yaml", "--n", "4", "--max_tokens", "24",
       "--band", "0.0", "1.0", "--output_dir", str(out / "labels"))  # fmt: skip
    # The training recipes read what `make demo` publishes (tests/e2e/test_pipeline.py runs them so); here they
    # read what the synthesis and labeling recipes published.
    ok("stage1", "--config", "recipes/smollm2/stage1.yaml", *TRAIN_SIZES, "--output_dir", str(out / "stage1"),
       "--dataset_name", "medssr-hub/smollm2-synthetic-labeled")  # fmt: skip
    ok("synthesize", "--config", "recipes/synthesis/config_heldout.yaml", "--num_questions", "4",
       "--output_dir", str(out / "heldout"))  # fmt: skip
    ok("stage2", "--config", "recipes/smollm2/stage2.yaml", *TRAIN_SIZES, "--output_dir", str(out / "stage2"),
       "--dataset_name", "medssr-hub/smollm2-vignettes-heldout")  # fmt: skip
    ok("evaluate", "--config", "recipes/evaluation/config_demo.yaml", "--benchmarks", "medqa", "bioasq",
       "--max_items", "1", "--num_samples", "1", "--max_tokens", "16", "--output_dir", str(out / "eval"))  # fmt: skip
    ok("leaderboard", "--config", "recipes/leaderboard/config_demo.yaml", "--results", str(out / "eval"),
       "--output_dir", str(out / "leaderboard"))  # fmt: skip

    # Each recipe published what the next one read.
    assert set(hub.versions("medssr-hub/smollm2-synthetic-labeled")) == {"v0.1.0"}
    assert set(hub.versions("medssr-hub/smollm2-medssr-stage2", "model")) == {"v0.1.0"}
    stage2_card = (hub.pull("medssr-hub/smollm2-medssr-stage2", "v0.1.0", "model") / "README.md").read_text()
    assert "base_model: medssr-hub/smollm2-medssr-stage1" in stage2_card
    assert "medssr-hub/smollm2-vignettes-heldout" in stage2_card
    results = json.loads((out / "eval" / "results.json").read_text())
    assert results["model"] == "medssr-hub/smollm2-medssr-stage2@v0.1.0" and set(results["benchmarks"]) == {
        "medqa",
        "bioasq",
    }
    assert set(hub.versions("medssr-hub/smollm2-leaderboard")) == {"v0.1.0"}

    # The folder each stage's output setting names is a valid input to the next stage. (datasets caches a
    # local folder by its name and config: two folders named `dataset` would share one cache entry.)
    synthetic = load_dataset(
        str(out / "synthesis" / "dataset"), split="train", cache_dir=str(tmp_path / "c1")
    )
    assert synthetic.features == SYNTHETIC_FEATURES
    assert [r.id for r in load_records(out / "synthesis")[0]] == synthetic["id"]
    labeled, _ = load_records(out / "labels", split="train")
    assert (
        load_dataset(str(out / "labels" / "dataset"), split="train", cache_dir=str(tmp_path / "c2")).features
        == LABELED_FEATURES
    )
    assert all(r.columns["label"] in r.options and r.key for r in labeled)

    # The stage 1 model, named by repo id and version, in synthesis and labeling (stage 2 and evaluation did above).
    weights = load_file(hub.pull(*STAGE1, "model") / "model.safetensors")
    name, tensor = next((k, v) for k, v in weights.items() if k.endswith("q_proj.weight"))
    as_model = {"model": STAGE1[0], "model_revision": STAGE1[1]}
    (syn_cfg,) = config_from_dict([SynthesisConfig], {**as_model, "output_dir": str(tmp_path / "x")})
    (label_cfg,) = config_from_dict(
        [LabelConfig], {**as_model, "chat": True, "output_dir": str(tmp_path / "y")}
    )
    for backend in (Synthesizer(syn_cfg).backend, Labeler(label_cfg).backend):
        assert torch.equal(backend.model.state_dict()[name], tensor)


def test_every_shipped_recipe_parses_with_the_installed_libraries():
    """Each recipe YAML's keys exist in its stage's config classes (TRL and transformers rename fields:
    transformers 5 dropped `warmup_ratio`), and the stage configs build from it."""
    from medssr_hub.config import check_keys, load_config, parse_config, read_yaml
    from medssr_hub.evaluation.evaluate import EvalConfig
    from medssr_hub.evaluation.leaderboard import LeaderboardConfig
    from medssr_hub.labeling.label import LabelConfig
    from medssr_hub.paths import package_data
    from medssr_hub.runs.ablation import AblationConfig
    from medssr_hub.runs.settings import RunSettings
    from medssr_hub.synthesis.config import SynthesisConfig
    from medssr_hub.training import grpo, sft

    stages = {
        "synthesis": [SynthesisConfig], "labeling": [LabelConfig], "evaluation": [EvalConfig],
        "leaderboard": [LeaderboardConfig], "recipes": [RunSettings],
    }  # fmt: skip
    files = sorted(package_data("recipes").rglob("*.yaml"))
    assert len(files) >= 15
    for f in files:
        if f.parent.name in ("smollm2", "qwen3-8b-base", "llama3.1-8b") and f.stem == "evaluation":
            parse_config([EvalConfig], ["--config", str(f)])
        elif f.parent.name in ("smollm2", "qwen3-8b-base", "llama3.1-8b"):
            types = sft.CONFIG_TYPES if f.stem == "sft" else grpo.CONFIG_TYPES
            check_keys(types, read_yaml(f), f)
        elif f.parent.name in stages:
            parse_config(stages[f.parent.name], ["--config", str(f)])
        elif f.parent.name == "ablation":  # the run settings and the rows, parsed together
            ablation = load_config(AblationConfig, ["--config", str(f)])
            assert ablation.run.publish_repo and ablation.table.rows, f
        elif f.parent.name == "lighteval":  # lighteval's model configs (pydantic, unknown keys refused)
            from lighteval.models.transformers.transformers_model import TransformersModelConfig

            TransformersModelConfig(**read_yaml(f)["model_parameters"])


def test_a_launcher_run_as_a_script_scores_with_the_evaluate_library(tmp_path, benchmarks_dir):
    """`python recipes/evaluate.py` puts recipes/ first on sys.path; its launcher evaluate.py must not stand
    in for the `evaluate` library that scores the answers (it did, and scoring failed)."""
    import subprocess
    import sys

    root = ROOT
    args = ["--benchmarks", str(benchmarks_dir / "bioasq.json"), "--max_items", "1", "--num_samples", "1"]
    args += ["--max_tokens", "4", "--output_dir", str(tmp_path / "eval")]
    proc = subprocess.run(
        [sys.executable, str(root / "recipes" / "evaluate.py"), *args],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((tmp_path / "eval" / "results.json").read_text())["benchmarks"]["bioasq"]["items"] == 1
