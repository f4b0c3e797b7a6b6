"""The suite runs in a world of its own (`conftest.own_world`): what a user published or cached never changes
a test's result, and no test changes it."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from medssr_hub.hub import LocalHub
from medssr_hub.hub.common import RUN_CONFIG
from tests.support.paths import ROOT

# The tests that run with the default local hub (no `--hub`, no MEDSSR_HUB_ROOT of their own): found by
# logging every call of `default_hub_root()` with the test that made it, over the suite's non-slow tests
# (2026-12-06): the two below, and test_clear_errors, which read it until a missing benchmarks folder was
# reported first. The last one publishes into it.
DEFAULT_HUB_TESTS = [
    "tests/e2e/test_pipeline.py::test_clear_errors",
    "tests/project/test_isolation.py::test_each_test_has_its_own_hub_caches_and_home",
    "tests/project/test_isolation.py::test_a_missing_benchmarks_folder_is_reported_before_a_conflicting_published_version",
]
CANARY = "hf_userTokenTheSuiteMustNeverRead0123456789"


def plant(hub: Path) -> None:
    """What a `make demo` with other settings leaves: the demo's leaderboard and stage 1 at v0.1.0."""
    for repo_id, repo_type in (
        ("medssr-hub/demo-leaderboard", "dataset"),
        ("medssr-hub/demo-stage1", "model"),
    ):
        folder = hub.parent / f"planted-{repo_type}"
        folder.mkdir(parents=True)
        (folder / RUN_CONFIG).write_text(json.dumps({"num_samples": 99, "model": "someone-elses"}))
        (folder / "README.md").write_text(f"# {repo_id}, published by the user\n")
        LocalHub(hub).publish(folder, repo_id, "v0.1.0", repo_type=repo_type)


def tree(folder: Path) -> dict[str, str]:
    """Every file and folder under `folder`, with each file's sha256."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        for p in sorted(folder.rglob("*"))
    }


def test_each_test_has_its_own_hub_caches_and_home(own_world):
    from huggingface_hub import constants

    from medssr_hub.hub.publishing import default_hub_root
    from medssr_hub.modeling import ensure_embedded_model

    assert default_hub_root().is_relative_to(own_world) and "MEDSSR_HUB_ROOT" not in os.environ
    assert Path.home().is_relative_to(own_world) and Path(constants.HF_TOKEN_PATH).is_relative_to(own_world)
    assert Path(constants.HF_HUB_CACHE).is_relative_to(own_world) and "HF_TOKEN" not in os.environ
    model = ensure_embedded_model()  # the shared converted folder, through a link: never converted again
    assert (
        model.is_relative_to(own_world)
        and model.is_symlink()
        and not model.resolve().is_relative_to(own_world)
    )


@pytest.mark.slow
def test_the_suite_never_reads_or_writes_the_users_hub_cache_or_home(tmp_path):
    """A user's default hub (under HOME) and named hub (MEDSSR_HUB_ROOT) both hold a demo published from
    other settings, and a token: the tests that use the default hub pass, and both are unchanged, byte for
    byte."""
    home, named = tmp_path / "home", tmp_path / "named-hub"
    default = home / ".cache" / "huggingface" / "medssr_hub" / "hub"
    plant(default)
    plant(named)
    (home / ".cache" / "huggingface" / "token").write_text(CANARY)
    before = {"home": tree(home), "named": tree(named)}
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("HF_", "HUGGING", "XDG_", "MEDSSR_HUB", "TRACKIO", "PYTEST_"))
    }
    env.update(HOME=str(home), MEDSSR_HUB_ROOT=str(named), HF_TOKEN=CANARY)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "--basetemp", str(tmp_path / "basetemp"),
         *DEFAULT_HUB_TESTS],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert f"{len(DEFAULT_HUB_TESTS)} passed" in done.stdout
    assert {"home": tree(home), "named": tree(named)} == before


def test_a_missing_benchmarks_folder_is_reported_before_a_conflicting_published_version(tmp_path, capsys):
    """The order a user needs: the input that is missing first, then whether the run may publish."""
    from medssr_hub.cli import main
    from medssr_hub.hub.publishing import default_hub_root

    plant(default_hub_root())
    args = ["demo", "--chat", "true", "--output_dir", str(tmp_path / "o")]
    assert main([*args, "--benchmarks-dir", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert "No benchmarks folder" in err and "already published" not in err, err
    assert not (tmp_path / "o").exists()  # nothing written for a run that cannot start
    assert main([*args, "--benchmarks-dir", str(ROOT / "src" / "medssr_hub" / "data" / "benchmarks")]) == 2
    assert "demo-leaderboard@v0.1.0 is already published from other settings" in capsys.readouterr().err
