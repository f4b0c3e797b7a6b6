"""A small HTTP proxy in front of a real llama.cpp server, for fault tests.

It forwards OpenAI routes unchanged and can inject failures: scripted status codes, delays longer than
the client's timeout, and non-JSON bodies. It also speaks TGI's native route (POST / with `inputs` and
`parameters`) by translating it to the server's /v1/completions, so the TGI code path is exercised
against real generations. Test-only: nothing in the product depends on it.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FaultProxy:
    def __init__(self, upstream: str):
        self.upstream = upstream.rstrip("/")
        self.script: list[int | str] = []  # per request, in order: an HTTP status, "slow" or "garbage"
        self.always: int | None = None  # answer every request with this status
        self.slow_seconds = 5.0
        self.requests = 0  # POSTs (generation requests)
        self.seen_headers: list[dict[str, str]] = []
        self.tgi_payloads: list[dict] = []
        self.bodies: list[dict] = []  # JSON bodies of forwarded POSTs
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def do_GET(self):
                self._forward(None)

            def do_POST(self):
                length = int(self.headers.get("content-length", 0))
                self._forward(self.rfile.read(length))

            def _reply(self, status: int, body: bytes, content_type: str = "application/json"):
                self.send_response(status)
                self.send_header("content-type", content_type)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _forward(self, body: bytes | None):
                with proxy._lock:
                    proxy.seen_headers.append({k.lower(): v for k, v in self.headers.items()})
                    # Faults and counts are for generation requests (POST); the backend's one GET of
                    # /v1/models (the served model's name) is forwarded as it is.
                    action = None
                    if self.command == "POST":
                        proxy.requests += 1
                        action = proxy.script.pop(0) if proxy.script else proxy.always
                if isinstance(action, int):
                    return self._reply(action, json.dumps({"error": f"injected {action}"}).encode())
                if action == "slow":
                    time.sleep(proxy.slow_seconds)
                if action == "garbage":
                    return self._reply(200, b"<html>not json</html>", "application/json")
                path = self.path
                if self.command == "POST" and body:
                    with proxy._lock:
                        proxy.bodies.append(json.loads(body))
                if self.command == "POST" and path in ("/", "/generate") and body:
                    return self._tgi(json.loads(body))
                req = urllib.request.Request(proxy.upstream + path, data=body, method=self.command)
                req.add_header("content-type", "application/json")
                try:
                    with urllib.request.urlopen(req, timeout=120) as resp:
                        return self._reply(resp.status, resp.read())
                except urllib.error.HTTPError as e:
                    return self._reply(e.code, e.read())
                except OSError as e:
                    return self._reply(502, json.dumps({"error": f"upstream: {e}"}).encode())

            def _tgi(self, payload: dict):
                proxy.tgi_payloads.append(payload)
                p = payload.get("parameters") or {}
                completion = {
                    "prompt": payload["inputs"],
                    "max_tokens": p.get("max_new_tokens", 20),
                    "temperature": (p.get("temperature") or 0.0) if p.get("do_sample") else 0.0,
                    "top_p": p.get("top_p") or 1.0,
                    "top_k": p.get("top_k") or 0,
                    "seed": p.get("seed"),
                    "stop": p.get("stop") or None,
                }
                req = urllib.request.Request(
                    proxy.upstream + "/v1/completions", data=json.dumps(completion).encode(), method="POST"
                )
                req.add_header("content-type", "application/json")
                with urllib.request.urlopen(req, timeout=120) as resp:
                    out = json.loads(resp.read())
                choice = out["choices"][0]
                details = {
                    "finish_reason": "length" if choice["finish_reason"] == "length" else "eos_token",
                    "generated_tokens": out["usage"]["completion_tokens"],
                    "seed": p.get("seed"),
                    "prefill": [],
                    "tokens": [],
                }
                self._reply(
                    200, json.dumps([{"generated_text": choice["text"], "details": details}]).encode()
                )

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
