"""Shared fixtures: each test's own world (hub, caches, HOME), the real embedded model, the shared
benchmark files, real llama.cpp and vLLM servers."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.support.data import publish_vignettes
from tests.support.paths import DATA, ROOT  # noqa: F401
from tests.support.servers import VLLM_KV_BYTES, VLLM_TEST_DTYPE, LlamaServer, VLLMServer

# Unset in every test: the user's own hub and token are theirs (a test that needs a token sets its own).
UNSET_ENV = ("MEDSSR_HUB_ROOT", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_ENDPOINT")


def _world_env(world: Path) -> dict[str, str]:
    """Where a user's machine keeps what the suite must never read or write, moved under `world` (its
    folders made): the default local hub and the medssr-hub cache (under HF_HOME, under XDG_CACHE_HOME, under
    HOME), the Hugging Face token and caches, trackio's projects. `MEDSSR_BENCHMARKS_DIR` is an input the
    suite is given, not state, and stays."""
    home = world / "home"
    env = {
        "HOME": str(home),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "HF_HOME": str(world / "hf-home"),
        "HF_HUB_CACHE": str(world / "hf-home" / "hub"),
        "HF_DATASETS_CACHE": str(world / "hf-home" / "datasets"),
        "HF_XET_CACHE": str(world / "hf-home" / "xet"),
        "HF_ASSETS_CACHE": str(world / "hf-home" / "assets"),
        "HUGGINGFACE_HUB_CACHE": str(world / "hf-home" / "hub"),
        "HF_TOKEN_PATH": str(world / "hf-home" / "token"),
        "MEDSSR_HUB_CACHE": str(world / "medssr-cache"),
        "TRACKIO_DIR": str(world / "trackio"),
    }
    for name in ("HOME", "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "HF_HOME"):
        Path(env[name]).mkdir(parents=True, exist_ok=True)
    return env


# Set before any test module imports huggingface_hub, datasets or trackio, which read these locations once,
# at import: what the suite imports in-process is pointed at a world of the session's own, never the user's.
_SESSION_WORLD = Path(tempfile.mkdtemp(prefix="medssr-tests-"))
atexit.register(shutil.rmtree, _SESSION_WORLD, True)
for _name in UNSET_ENV:
    os.environ.pop(_name, None)
os.environ.update(_world_env(_SESSION_WORLD))
# Caches of the tools' own, not of the user's work, shared by the session's tests: matplotlib's font list and
# vLLM's compile cache would otherwise be rebuilt in every test's HOME.
os.environ["MPLCONFIGDIR"] = str(_SESSION_WORLD / "matplotlib")
os.environ["VLLM_CACHE_ROOT"] = str(_SESSION_WORLD / "vllm")


@pytest.fixture(scope="session")
def shared_embedded_model(request) -> Path:
    """The embedded model, converted once per checkout into pytest's cache folder (not the user's cache)
    and shared read-only by every test's world."""
    from medssr_hub import modeling

    cache = getattr(request.config, "cache", None)  # None under `-p no:cacheprovider`
    folder = cache.mkdir("medssr-embedded") if cache is not None else _SESSION_WORLD
    mp = pytest.MonkeyPatch()
    mp.setenv("MEDSSR_HUB_CACHE", str(folder))
    try:
        return modeling.ensure_embedded_model()
    finally:
        mp.undo()


@pytest.fixture(autouse=True)
def own_world(tmp_path_factory, monkeypatch, shared_embedded_model):
    """Each test's own hub root, Hugging Face home and caches, medssr-hub cache, trackio folder and HOME,
    for itself and every process it starts: what a user published or cached never changes a test's result,
    and no test changes it. The default local hub (the medssr-hub cache's `hub/`) is the world's own."""
    import datasets.config
    from huggingface_hub import constants

    world = tmp_path_factory.mktemp("world")
    env = _world_env(world)
    for name in UNSET_ENV:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    models = Path(env["MEDSSR_HUB_CACHE"]) / "models"
    models.mkdir(parents=True)
    (models / shared_embedded_model.name).symlink_to(shared_embedded_model, target_is_directory=True)
    # huggingface_hub and datasets read these once, at import: the test's own, in this process too.
    for name in ("HF_HOME", "HF_HUB_CACHE", "HF_ASSETS_CACHE", "HF_XET_CACHE", "HF_TOKEN_PATH"):
        monkeypatch.setattr(constants, name, env[name])
    stored = Path(env["HF_TOKEN_PATH"]).with_name("stored_tokens")
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(stored))
    # datasets caches a local folder's tables by the folder's name and config (see README): its own
    # cache per test, so a table prepared by an earlier run never stands in for this test's.
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", Path(env["HF_DATASETS_CACHE"]))
    return world


@pytest.fixture(scope="session")
def benchmarks_dir() -> Path:
    folder = Path(os.environ.get("MEDSSR_BENCHMARKS_DIR", ROOT.parent / "shared" / "benchmarks"))
    if not folder.is_dir():
        pytest.fail(f"benchmark files not found at {folder}; set MEDSSR_BENCHMARKS_DIR")
    return folder


@pytest.fixture(scope="session")
def embedded_dir(shared_embedded_model) -> Path:
    return shared_embedded_model


@pytest.fixture(scope="session")
def embedded_backend(embedded_dir):
    from medssr_hub.generation.embedded import EmbeddedBackend

    return EmbeddedBackend(model=str(embedded_dir), batch_size=16)


@pytest.fixture(scope="session")
def gguf_path() -> Path:
    from medssr_hub.modeling import find_embedded_gguf

    return find_embedded_gguf()


@pytest.fixture(scope="module")
def llama_server(gguf_path, tmp_path_factory):
    server = LlamaServer(gguf_path, tmp_path_factory.mktemp("llama"))
    yield server
    server.stop()


@pytest.fixture
def fresh_llama_server(gguf_path, tmp_path):
    """A server of the test's own, for tests that kill it."""
    server = LlamaServer(gguf_path, tmp_path)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def vllm_server(embedded_dir, tmp_path_factory):
    """One vLLM server for the whole session (it takes a minute or more to start)."""
    server = VLLMServer(embedded_dir, tmp_path_factory.mktemp("vllm"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def vllm_backend(embedded_dir):
    """One in-process vLLM engine (`backend: vllm`) for the whole session."""
    from medssr_hub.generation.offline_vllm import VLLMBackend

    return VLLMBackend(
        model=str(embedded_dir),
        batch_size=16,
        engine={"kv_cache_memory_bytes": int(VLLM_KV_BYTES), "max_model_len": 4096, "dtype": VLLM_TEST_DTYPE},
    )


@pytest.fixture(scope="session")
def labeled(tmp_path_factory):
    """Six catalogue vignettes with keys, pseudo-labeled by the embedded policy, on a local hub (once per
    session; each test publishes under its own repo names)."""
    from medssr_hub.labeling.label import LabelConfig, run_labeling

    root = tmp_path_factory.mktemp("training")
    hub = publish_vignettes(root)
    run_labeling(
        LabelConfig(
            input="medssr/synth",
            input_revision="v1.0.0",
            chat=True,
            hub=str(hub),
            n=4,
            max_tokens=40,
            band=[0.0, 1.0],
            output_dir=str(root / "labels"),
            publish_repo="medssr/synth-labeled",
            publish_version="v1.0.0",
        )
    )
    return hub
