"""What we publish loads in the Hub's own clients: `medssr-hub hub-serve` serves the local hub over the Hub's
HTTP API, and a subprocess that imports only datasets, huggingface_hub and transformers (and runs `hf`)
reads a pseudo-labeled dataset, a leaderboard's `results` and `details` configs and a model by repo id and
version, with HF_ENDPOINT as the one setting."""

import json
import os
import subprocess
import sys
import textwrap
import threading
import urllib.request

import pytest

from medssr_hub.evaluation.config import EvalConfig
from medssr_hub.evaluation.evaluate import Evaluator
from medssr_hub.evaluation.leaderboard import leaderboard_release, push_leaderboard, write_leaderboard
from medssr_hub.evaluation.runs import Run
from medssr_hub.hub import LocalHub
from medssr_hub.hub.serve import make_server

CLIENT = textwrap.dedent(
    """
    import json, os, subprocess, sys
    from datasets import load_dataset
    from huggingface_hub import snapshot_download
    from transformers import AutoModelForCausalLM

    out = {}
    labeled = load_dataset("medssr/synth-labeled", revision="v1.0.0")
    out["labeled"] = {split: labeled[split].num_rows for split in labeled}
    results = load_dataset("medssr/board", "results", revision="v0.1.0", split="train")
    out["results"] = sorted({row["benchmark"] for row in results})
    details = load_dataset("medssr/board", "details", revision="v0.1.0", split="train")
    out["details"] = details.num_rows
    out["dataset_snapshot"] = snapshot_download("medssr/synth-labeled", repo_type="dataset", revision="v1.0.0")
    out["model_snapshot"] = snapshot_download("medssr/policy", revision="v0.1.0")
    model = AutoModelForCausalLM.from_pretrained("medssr/policy", revision="v0.1.0")
    out["model"] = [type(model).__name__, model.num_parameters()]
    cli = [os.path.join(os.path.dirname(sys.executable), "hf"), "download"]
    for repo, kind in (("medssr/board", "dataset"), ("medssr/policy", "model")):
        done = subprocess.run([*cli, repo, "--repo-type", kind, "--revision", "v0.1.0"], capture_output=True,
                              text=True, timeout=300)
        out[f"hf_{kind}"] = [done.returncode, done.stdout.strip().splitlines()[-1:]]
    print(json.dumps(out))
    """
)


@pytest.mark.slow
def test_the_hubs_own_clients_read_our_repos_by_id_and_version(
    labeled, embedded_dir, benchmarks_dir, tmp_path
):
    hub = LocalHub(labeled)
    cfg = EvalConfig(
        benchmarks=[str(benchmarks_dir / "medqa.json")], max_items=2, num_samples=1, max_tokens=8,
        output_dir=str(tmp_path / "eval"),
    )  # fmt: skip
    runs = [Run.from_folder(cfg.output_dir, Evaluator(cfg).run())]
    files = write_leaderboard(runs, tmp_path / "board")
    push_leaderboard(runs, files, leaderboard_release(runs, "medssr/board", "v0.1.0", str(labeled)))
    hub.publish(embedded_dir, "medssr/policy", "v0.1.0", repo_type="model")

    server = make_server(labeled)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    home = tmp_path / "client-home"
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "HF_HOME": str(home / "hf"), "HF_ENDPOINT": url}
    try:
        done = subprocess.run(
            [sys.executable, "-c", CLIENT], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, done.stderr[-3000:]
        out = json.loads(done.stdout.strip().splitlines()[-1])
        # Refused, not served: a path out of a snapshot, a revision the hub does not have.
        commit = hub.resolve("medssr/policy", "v0.1.0", "model")
        for bad in (
            f"/medssr/policy/resolve/{commit}/..%2F..%2Frefs.json",
            "/medssr/policy/resolve/v9.9.9/config.json",
        ):
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(url + bad, timeout=30)
            assert refused.value.code == 404
    finally:
        server.shutdown()
        server.server_close()
    assert "train" in out["labeled"] and sum(out["labeled"].values()) == 6  # every question, by split
    assert out["results"] == ["medqa"] and out["details"] == 2
    assert out["model"] == ["LlamaForCausalLM", 134515008]
    assert out["hf_dataset"][0] == 0 and out["hf_model"][0] == 0
    model_commit = hub.resolve("medssr/policy", "v0.1.0", "model")
    assert out["model_snapshot"].endswith(model_commit)  # the Hub cache's own layout, our commit id
    assert out["dataset_snapshot"].endswith(hub.resolve("medssr/synth-labeled", "v1.0.0"))
