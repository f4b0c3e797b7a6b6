"""The ablation command (`medssr-hub ablation`): the rows' plan, and one small run end to end on the
embedded model with a local hub, interrupted and resumed."""

import json

import pandas as pd
import pytest

from medssr_hub.cli import main
from medssr_hub.errors import ConfigError
from medssr_hub.hub import LocalHub
from medssr_hub.paths import recipe_path
from medssr_hub.runs.ablation import AblationConfig, plan, render_table
from medssr_hub.runs.settings import RunSettings

TINY = {
    "backend": "embedded",
    "items_per_benchmark": 1,
    "num_samples": 1,
    "max_tokens": 16,
    "rows": ["base", "sft", "ttrl", "medssr_stage2"],
    "synthesis": {"num_questions": 6, "alpha": 1.0, "rare_generator": "vignette", "seed": 42,
                  "publish_repo": "t/synthetic", "publish_version": "v1.0.0"},
    "labeling": {"n": 4, "max_tokens": 24, "band": [0.0, 1.0], "shard_size": 6,
                 "publish_repo": "t/labeled", "publish_version": "v1.0.0"},
    "stage1": {"config": "recipes/smollm2/stage1.yaml", "max_steps": 1, "max_completion_length": 16,
               "per_device_train_batch_size": 4, "num_generations": 4, "save_steps": 1},
    "sft": {"config": "recipes/smollm2/sft.yaml", "max_steps": 1, "max_length": 256, "save_steps": 1},
    "heldout": {"num_questions": 4, "alpha": 1.0, "rare_generator": "vignette", "seed": 7,
                "publish_repo": "t/heldout", "publish_version": "v1.0.0"},
    "stage2": {"config": "recipes/smollm2/stage2.yaml", "max_steps": 1, "max_completion_length": 16,
               "per_device_train_batch_size": 4, "num_generations": 4, "save_steps": 1},
    "keyed_eval": {"num_questions": 24, "alpha": 1.0, "rare_generator": "vignette", "seed": 11,
                   "publish_repo": None},
    "keyed_eval_size": 4,
    "keyed_max_tokens": 16,
    # Each training as its own `accelerate launch` (the GPU config's path; in-process is the demo's).
    "launch": {"num_processes": 1},
    "models_repo": "t/ablation",
    "publish_repo": "t/ablation-leaderboard",
    "publish_version": "v1.0.0",
}  # fmt: skip


def test_rows_run_after_the_row_they_start_from_and_bad_rows_are_refused(tmp_path):
    assert [r.name for r in plan(["medssr_stage2", "base", "ttrl"])] == [
        "medssr",
        "medssr_stage2",
        "base",
        "ttrl",
    ]
    cfg = AblationConfig.from_dict({}, yaml_file=recipe_path("recipes/ablation/smollm2_cpu.yaml"))
    assert cfg.table.rows == ["base", "sft", "stage2_only", "medssr", "ttrl", "oracle", "medssr_stage2"]
    data = {"chat": True, "synthesis": {"a": 1}, "labeling": {"a": 1}, "keyed_eval": {"a": 1}}
    with pytest.raises(ConfigError, match="unknown"):
        AblationConfig.from_dict({**data, "rows": ["base", "grpo"]})
    with pytest.raises(ConfigError, match="row medssr trains stage1"):  # the row stage 2 starts from
        AblationConfig.from_dict({**data, "rows": ["medssr_stage2"], "stage2": {"max_steps": 1}})
    with pytest.raises(ConfigError, match="set `sft`"):
        AblationConfig.from_dict({**data, "rows": ["sft"]})
    with pytest.raises(ConfigError, match="needs synthesis, labeling and keyed_eval"):
        AblationConfig.from_dict({**data, "keyed_eval": None, "rows": ["base"]})
    # Its own defaults where the demo's would collide with the demo's folder and leaderboard repo.
    alone = AblationConfig.from_dict({**data, "rows": ["base"]})
    assert alone.run.output_dir == "outputs/ablation"
    assert alone.run.publish_repo == "medssr-hub/ablation-leaderboard"
    assert RunSettings(chat=True).output_dir == "outputs/demo"
    table = {"base": {"title": "base", "keyed": {"mean": 0.5, "ci95": [0.25, 0.75], "n": 4}}}
    table["base"] |= {c: None for c in ("rare", "official", "lenient", "label_accuracy")}
    assert "| base | 50.0 [25.0, 75.0] | – | – | – | – |" in render_table(table)


@pytest.mark.slow
def test_a_small_ablation_runs_resumes_and_publishes(tmp_path, benchmarks_dir, monkeypatch):
    hub = tmp_path / "hub"
    bench = tmp_path / "benchmarks"  # two of the benchmark files, to keep the test short
    bench.mkdir()
    for name in ("bioasq.json", "medqa.json"):
        (bench / name).write_bytes((benchmarks_dir / name).read_bytes())
    config = tmp_path / "ablation.yaml"
    config.write_text(json.dumps({**TINY, "output_dir": str(tmp_path / "out"), "hub": str(hub),
                                  "benchmarks_dir": str(bench)}))  # fmt: skip
    assert main(["ablation", "--config", str(config)]) == 0
    out = tmp_path / "out"
    summary = json.loads((out / "ablation.json").read_text())
    rows = summary["rows"]
    assert set(rows) == {"base", "sft", "ttrl", "medssr_stage2"}  # medssr trained (stage 2 starts from it)
    table = (out / "ablation.md").read_text().splitlines()
    assert [line.split(" | ")[0] for line in table[2:6]] == [f"| {rows[r]['title']}" for r in TINY["rows"]]
    for name, row in rows.items():
        assert row["keyed"]["n"] == 4 and row["official"] and row["lenient"], name
        for column in ("keyed", "official", "lenient"):
            lo, hi = row[column]["ci95"]
            assert 0 <= lo <= row[column]["mean"] <= hi <= 1
    # Label accuracy: none for the base; offline labels for sft and medssr_stage2 (the same labels); the
    # ttrl row's from its training log.
    assert rows["base"]["label_accuracy"] is None
    assert rows["sft"]["label_accuracy"] == rows["medssr_stage2"]["label_accuracy"]
    logged = json.loads((out / "ttrl" / "final" / "train_summary.json").read_text())["log_history"]
    assert rows["ttrl"]["label_accuracy"]["mean"] == pytest.approx(
        sum(h["medssr/label_accuracy"] for h in logged if "medssr/label_accuracy" in h)
        / rows["ttrl"]["label_accuracy"]["n"]
    )
    assert (out / "ttrl" / "launch_config.yaml").is_file()  # launched, from the recipe plus the overrides
    # The rows trained what they say: the ttrl run voted online; stage 2 started from the medssr model.
    assert "medssr/vote_no_majority" in json.dumps(logged)
    card = (LocalHub(hub).pull("t/ablation-medssr_stage2", "v1.0.0", "model") / "README.md").read_text()
    assert "base_model: t/ablation-medssr" in card
    csv = pd.read_csv(out / "ablation.csv")
    assert list(csv["row"]) == TINY["rows"] and (out / "ablation.png").stat().st_size > 0
    published = LocalHub(hub).pull("t/ablation-leaderboard", "v1.0.0")
    assert set(pd.read_parquet(next((published / "data").glob("results-*.parquet")))["model"]) == {
        r["title"] for r in rows.values()
    }

    # A rerun redoes nothing: every step finds its work on disk, and the table is the same.
    before = (out / "ablation.md").read_text()
    (out / "ablation.md").unlink()
    assert main(["ablation", "--config", str(config)]) == 0
    assert (out / "ablation.md").read_text() == before
