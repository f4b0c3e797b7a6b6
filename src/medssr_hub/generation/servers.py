"""The servers behind an endpoint backend: which one takes a request, which failures are retried, when a
server is set aside, and how huggingface_hub's clients reach them with HF_HUB_OFFLINE set."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Sequence
from urllib.parse import urlsplit

from huggingface_hub import constants, set_async_client_factory
from huggingface_hub.errors import HfHubHTTPError, InferenceTimeoutError
from huggingface_hub.utils._http import async_hf_request_event_hook, default_async_client_factory

from medssr_hub.bounds import abound_response
from medssr_hub.generation.base import GenerationError
from medssr_hub.utils import TransportError, describe_error

logger = logging.getLogger(__name__)

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


# HF_HUB_OFFLINE keeps huggingface_hub off the Hub, but its request hook refuses every URL, so the
# InferenceClient could not reach a vLLM/TGI server on the node either. Requests to the servers a config
# names pass; every other request keeps huggingface_hub's own hook. Installed through
# set_async_client_factory, huggingface_hub's documented way to customise its async clients.
_SERVERS: set[tuple[str, str | None, int | None]] = set()


def _origin(url: str) -> tuple[str, str | None, int | None]:
    parts = urlsplit(url)
    return parts.scheme, parts.hostname, parts.port or {"http": 80, "https": 443}.get(parts.scheme)


async def _request_hook(request) -> None:
    if _origin(str(request.url)) in _SERVERS:
        # An inference server gets its own token or none: the empty header an EndpointBackend without a
        # token sets (so that huggingface_hub does not fill in the HF token) is dropped here.
        if request.headers.get("authorization", None) == "":
            del request.headers["authorization"]
        if constants.is_offline_mode():
            return
    await async_hf_request_event_hook(request)


def _async_client():
    client = default_async_client_factory()
    client.event_hooks["request"] = [_request_hook]
    client.event_hooks["response"] = [*client.event_hooks["response"], abound_response]
    return client


def reach_servers_offline(urls: Sequence[str]) -> None:
    """Let huggingface_hub's clients reach these servers when HF_HUB_OFFLINE is set (the Hub stays off)."""
    _SERVERS.update(_origin(u) for u in urls)
    set_async_client_factory(_async_client)


def is_retryable(error: BaseException) -> bool:
    if isinstance(error, HfHubHTTPError):
        response = getattr(error, "response", None)
        status = getattr(response, "status_code", None)
        return status is None or status in RETRY_STATUS
    return isinstance(
        error,
        InferenceTimeoutError
        | asyncio.TimeoutError
        | TransportError
        | ConnectionError
        | json.JSONDecodeError,
    )


@contextlib.contextmanager
def wrong_shape(text: str):
    """A response that parsed as JSON but not into the fields we read: treated as a garbled answer (retried,
    then one line naming the server), not as a bug of ours."""
    try:
        yield
    except (AttributeError, TypeError, KeyError) as e:
        raise json.JSONDecodeError(f"response of the wrong shape ({e})", text[:200], 0) from e


# A server whose requests failed this many times in a row is set aside for the rest of the run; its
# requests go to the others (several servers only: with one, its failures are retried as usual).
SET_ASIDE_AFTER = 3


class Server:
    """One server of the backend: its URL, the requests in flight on it, its consecutive failures."""

    def __init__(self, url: str):
        self.url = url.rstrip("/")
        self.outstanding = 0
        self.failures = 0
        self.set_aside = False
        self.requests = 0


class ServerPool:
    """The backend's servers: each request goes to the one with the fewest requests in flight."""

    def __init__(self, urls: Sequence[str]):
        self.servers = [Server(u) for u in urls]

    def pick(self) -> Server:
        """The server with the fewest requests in flight, among those not set aside."""
        live = [s for s in self.servers if not s.set_aside]
        if not live:
            raise GenerationError(
                "every endpoint server was set aside after repeated failures: "
                + ", ".join(s.url for s in self.servers)
            )
        return min(live, key=lambda s: (s.outstanding, s.requests))

    def failed(self, server: Server, error: BaseException) -> bool:
        """Count a retryable failure; True when it sets the server aside (its request moves on at once)."""
        server.failures += 1
        live = [s for s in self.servers if not s.set_aside]
        if server.failures >= SET_ASIDE_AFTER and len(live) > 1 and not server.set_aside:
            server.set_aside = True
            logger.warning(
                "endpoint %s set aside after %d failures in a row (%s); its requests go to the other %d",
                server.url,
                server.failures,
                describe_error(error),
                len(live) - 1,
            )
            return True
        return server.set_aside
