"""Nothing waits forever: a hub and an inference server that accept the connection and never answer.
Each command ends within its configured timeout plus the retries, with one line naming the server."""

import contextlib
import socket
import subprocess
import sys
import threading
import time

import pytest

from medssr_hub.generation import GenerationError, SamplingParams
from medssr_hub.generation.endpoint import EndpointBackend


@pytest.fixture
def silent_server():
    """Accepts every connection on 127.0.0.1, reads nothing, answers nothing."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    held, stop = [], threading.Event()

    def accept():
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(sock.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    sock.close()


def hub_command(command: str, tmp_path, hub: str) -> list[str]:
    """`pull org/data` or `publish` of a one-file folder, against `hub`."""
    (tmp_path / "art" / "data").mkdir(parents=True)
    (tmp_path / "art" / "data" / "train.json").write_text('[{"id": "1"}]')
    return {
        "pull": ["pull", "org/data", "--hub", hub],
        "publish": ["publish", str(tmp_path / "art"), "--repo-id", "org/data", "--version", "v1.0.0", "--hub", hub],
    }[command]  # fmt: skip


@pytest.mark.parametrize("command", ["pull", "publish"])
def test_a_silent_hub_ends_with_one_line(tmp_path, silent_server, command):
    args = hub_command(command, tmp_path, silent_server)
    env = {
        "MEDSSR_HUB_TIMEOUT": "1",
        "HF_TOKEN": "hf_" + "T" * 30,
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
    }
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "medssr_hub.cli", *args], capture_output=True, text=True, env=env, timeout=180
    )
    elapsed = time.monotonic() - start
    assert done.returncode == 2, done.stderr[-2000:]
    error = [line for line in done.stderr.splitlines() if line.startswith("medssr-hub: error")]
    assert len(error) == 1 and silent_server in error[0] and "Timeout" in error[0], done.stderr[-2000:]
    assert "each request waits at most 1s" in done.stderr
    assert elapsed < 60, elapsed  # huggingface_hub retries a few times; never the unbounded wait


def test_a_silent_endpoint_fails_within_its_timeout_and_retries(silent_server):
    backend = EndpointBackend(
        silent_server, model="m", timeout=1.0, max_retries=2, backoff=0.1, max_backoff=0.2
    )
    start = time.monotonic()
    with pytest.raises(GenerationError, match=rf"endpoint {silent_server} failed after 3 attempt\(s\)"):
        backend.generate(["Question: x?\nAnswer:"], SamplingParams(max_tokens=4), progress=False)
    assert time.monotonic() - start < 3 * 1.0 + 3  # three attempts of 1 s, plus backoff and slack


@contextlib.contextmanager
def serving(handler):
    """An HTTP server on 127.0.0.1 running `handler` in threads; its URL while the block runs."""
    from http.server import ThreadingHTTPServer

    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def garbage_server():
    """Answers every request with 200 and JSON of a shape no client expects (`{"choices": ["..."]}`)."""
    from http.server import BaseHTTPRequestHandler

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _answer(self):
            length = int(self.headers.get("content-length") or 0)
            self.rfile.read(length)
            body = b'{"choices": ["not a choice"], "siblings": 3, "data": "x"}'
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_HEAD = _answer

    with serving(Handler) as url:
        yield url


@pytest.mark.parametrize("command", ["pull", "publish"])
def test_a_hub_answering_garbage_json_ends_with_one_line_naming_hub_and_repo(
    tmp_path, garbage_server, command
):
    args = hub_command(command, tmp_path, garbage_server)
    env = {"MEDSSR_HUB_TIMEOUT": "5", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "medssr_hub.cli", *args], capture_output=True, text=True, env=env, timeout=180
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-3000:]
    error = [line for line in done.stderr.splitlines() if line.startswith("medssr-hub: error")]
    assert len(error) == 1 and garbage_server in error[0] and "org/data" in error[0], done.stderr[-2000:]


def test_an_endpoint_answering_the_wrong_shape_is_retried_then_named(garbage_server):
    backend = EndpointBackend(
        garbage_server,
        model="m",
        route="completions",
        timeout=5.0,
        max_retries=2,
        backoff=0.05,
        max_backoff=0.1,
    )
    with pytest.raises(
        GenerationError, match=rf"endpoint {garbage_server} failed after 3 attempt\(s\).*wrong shape"
    ):
        backend.generate(["Question: x?\nAnswer:"], SamplingParams(max_tokens=4), progress=False)


@pytest.fixture
def trickling_server():
    """Answers 200 with a long JSON body, one byte every 0.3 s (each read arrives within any per-read
    timeout, the whole never does)."""
    from http.server import BaseHTTPRequestHandler

    stop = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            self.rfile.read(int(self.headers.get("content-length") or 0))
            body = b'{"choices": [{"text": "' + b"x" * 1000 + b'"}]}'
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            for byte in body:
                if stop.is_set():
                    return
                try:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                except OSError:
                    return
                time.sleep(0.3)

    with serving(Handler) as url:
        yield url
        stop.set()  # before the server shuts down: a handler still trickling returns


def test_a_trickling_endpoint_ends_within_its_timeout_and_retries(trickling_server):
    backend = EndpointBackend(
        trickling_server,
        model="m",
        route="completions",
        timeout=1.0,
        max_retries=1,
        backoff=0.1,
        max_backoff=0.2,
    )
    start = time.monotonic()
    with pytest.raises(GenerationError, match=rf"endpoint {trickling_server} failed after 2 attempt\(s\)"):
        backend.generate(["Question: x?\nAnswer:"], SamplingParams(max_tokens=4), progress=False)
    assert time.monotonic() - start < 2 * 1.0 + 3  # two attempts of 1 s each, whole, plus backoff and slack


@pytest.fixture
def endless_server():
    """Answers 200 with a chunked JSON body that never ends, as fast as the client reads it."""
    from http.server import BaseHTTPRequestHandler

    stop = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_POST(self):
            self.rfile.read(int(self.headers.get("content-length") or 0))
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            chunk = b'{"choices": [{"text": "' + b"x" * 2**16
            while not stop.is_set():
                try:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                except OSError:
                    return
                chunk = b"x" * 2**16

    with serving(Handler) as url:
        yield url
        stop.set()


@pytest.mark.parametrize("route", ["completions", "chat"])
def test_an_endless_endpoint_answer_is_cut_at_its_size_bound(endless_server, monkeypatch, route):
    """A server streaming one answer without end (a 2 GB answer, or more): the request stops at the size
    bound ($MEDSSR_MAX_RESPONSE_BYTES, 8 MB here) with the server named, never read whole into memory."""
    import tracemalloc

    monkeypatch.setenv("MEDSSR_MAX_RESPONSE_BYTES", "8000000")
    backend = EndpointBackend(endless_server, model="m", route=route, timeout=60, max_retries=0)
    tracemalloc.start()
    start = time.monotonic()
    with pytest.raises(GenerationError, match=r"sent more than 8,000,000 bytes"):
        backend.generate(["Question: x?\nAnswer:"], SamplingParams(max_tokens=4), progress=False)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert time.monotonic() - start < 30 and peak < 64 * 2**20, peak
