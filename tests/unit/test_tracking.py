"""Labeling and evaluation log their summary metrics to one trackio project (local, offline), read back
from trackio's own storage. Training's `report_to: trackio` is tested in test_training.py (stage 2)."""

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.support.data import publish_vignettes
from tests.support.trackio import tracked

CLI = str(Path(sys.executable).with_name("medssr-hub"))


def test_labeling_and_evaluation_log_their_summaries_to_one_project(tmp_path, benchmarks_dir):
    hub = publish_vignettes(tmp_path / "hub")
    project, trackio_dir = "medssr-test", tmp_path / "trackio"
    # trackio reads TRACKIO_DIR when imported: each stage runs in its own process, as from the shell.
    env = {**os.environ, "MEDSSR_HUB_ROOT": str(hub), "TRACKIO_DIR": str(trackio_dir)}
    label = ["label", "--input", "medssr/synth", "--input_revision", "v1.0.0", "--hub", str(hub), "--n", "2",
             "--max_tokens", "8", "--band", "0", "1", "--output_dir", str(tmp_path / "labels")]  # fmt: skip
    evaluate = ["evaluate", "--benchmarks", str(benchmarks_dir / "medqa.json"), "--max_items", "2",
                "--num_samples", "1", "--max_tokens", "8", "--display_name", "smollm2",
                "--output_dir", str(tmp_path / "eval")]  # fmt: skip
    for argv in (label, evaluate):
        done = subprocess.run(
            [CLI, *argv, "--trackio_project", project], env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr[-3000:]

    stats = json.loads((tmp_path / "labels" / "dataset" / "stats.json").read_text())
    (labeled,) = tracked(trackio_dir, project, "label-labels")
    assert labeled["kept"] == stats["kept"] and labeled["mean_agreement"] == stats["mean_agreement"]
    results = json.loads((tmp_path / "eval" / "results.json").read_text())
    (evaluated,) = tracked(trackio_dir, project, "eval-smollm2")
    assert evaluated["medqa/mean"] == results["benchmarks"]["medqa"]["mean"]
    assert evaluated["medqa/std"] == results["benchmarks"]["medqa"]["std"]
