"""Bounds on what a server sends back: a body's size, decompressed included, and how long it may take.

httpx's timeouts bound each read, not a request: a server trickling a byte a second, or streaming without
end, holds a request for ever, and a 1 MB gzip body may decode to gigabytes that `response.read()` joins
in memory. `bound_response` is a response hook, installed on every HTTP client that talks to a hub or an
inference server (huggingface_hub's, through its client factories, and ours). It wraps the response's
content decoder, so that every decoded piece is counted as it is produced (httpx2 decodes in pieces of
bounded size), and stops the body:

- past `$MEDSSR_MAX_RESPONSE_BYTES` (default 256 MiB) for API answers (JSON: repo info, listings,
  completions) and for files sent without a Content-Length; a file with one is held to it;
- when it has taken longer than `$MEDSSR_REQUEST_DEADLINE` seconds (default 300) plus one second per
  MiB received: a slow trickle ends at the deadline, a large download at a steady rate does not.

Ground layer: imports only the errors and the HTTP stack huggingface_hub ships.
"""

from __future__ import annotations

import os
import time

from medssr_hub.errors import InputError, ServiceError

MAX_BYTES_ENV = "MEDSSR_MAX_RESPONSE_BYTES"
DEADLINE_ENV = "MEDSSR_REQUEST_DEADLINE"
DEFAULT_MAX_BYTES = 256 * 2**20
DEFAULT_DEADLINE_S = 300.0
RATE_FLOOR = 2**20  # bytes a second a long body must average, past the deadline


class ResponseBoundError(ServiceError):
    """A server's answer went past its size bound or its deadline."""


def _setting(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = float(raw)
    except ValueError:
        raise InputError(f"${name} must be a positive number, got {raw!r}") from None
    if not value > 0:
        raise InputError(f"${name} must be a positive number, got {raw!r}")
    return value


def max_response_bytes() -> int:
    return int(_setting(MAX_BYTES_ENV, DEFAULT_MAX_BYTES))


def request_deadline() -> float:
    return _setting(DEADLINE_ENV, DEFAULT_DEADLINE_S)


def check_settings() -> None:
    """A bad setting is an error when a client is built, not at its first answer."""
    max_response_bytes()
    request_deadline()


class _BoundedDecoder:
    """The response's own content decoder, counting what it yields and watching the clock."""

    def __init__(self, inner, url: str, limit: int, deadline: float):
        self.inner, self.url, self.limit, self.deadline = inner, url, limit, deadline
        self.start, self.seen = time.monotonic(), 0

    def _count(self, pieces):
        for piece in pieces:
            self.seen += len(piece)
            if self.seen > self.limit:
                raise ResponseBoundError(
                    f"{self.url} sent more than {self.limit:,} bytes (decoded); ${MAX_BYTES_ENV} sets the bound"
                )
            if time.monotonic() - self.start > self.deadline + self.seen / RATE_FLOOR:
                raise ResponseBoundError(
                    f"{self.url} took longer than {self.deadline:g} s (and 1 s a MiB) to answer; "
                    f"${DEADLINE_ENV} sets the deadline"
                )
            yield piece

    def decode(self, data: bytes):
        return self._count(self.inner.decode(data))

    def flush(self):
        return self._count(self.inner.flush())


def bound_response(response) -> None:
    """Response hook: a declared length over the bound is refused at once; the body is counted as it is
    decoded. The response's decoder is httpx2's private `_decoder` (it has no public hook for it)."""
    url = str(response.request.url).split("?")[0][:200]
    declared = response.headers.get("content-length", "")
    is_api = "/api/" in response.request.url.path or "/v1/" in response.request.url.path
    limit = max_response_bytes()
    if declared.isdigit():
        if is_api and int(declared) > limit:
            raise ResponseBoundError(
                f"{url} announced {int(declared):,} bytes, over the {limit:,}-byte bound (${MAX_BYTES_ENV})"
            )
        if not is_api:
            limit = max(int(declared), 1)
    response._decoder = _BoundedDecoder(response._get_content_decoder(), url, limit, request_deadline())


async def abound_response(response) -> None:
    """`bound_response` for async clients (their hooks are awaited)."""
    bound_response(response)
