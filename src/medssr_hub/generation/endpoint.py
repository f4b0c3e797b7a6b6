"""Generation through a TGI or OpenAI-compatible server (vLLM, llama.cpp, SGLang).

The wire dialects (`chat`, `completions`, `tgi`) are route objects in `routes.py`; which server takes a
request, and which failures are retried, is `servers.py`. This module runs a batch: requests run
concurrently (bounded), each retried by tenacity with exponential back-off on 429/5xx, timeouts,
connection errors and garbled answers. Finished completions are handed to `on_complete` as they arrive, and a batch that
fails for good raises `GenerationError` carrying everything that did finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Sequence
from functools import cached_property

from huggingface_hub.errors import HfHubHTTPError
from huggingface_hub.utils import hf_raise_for_status
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, wait_random_exponential
from tqdm.auto import tqdm

from medssr_hub.bounds import abound_response
from medssr_hub.errors import InputError
from medssr_hub.generation.base import (
    BackendStats,
    Capabilities,
    Completion,
    GenerationError,
    OnComplete,
    Prompt,
    Sample,
    SamplingParams,
    prompt_seeds,
    sample_seed,
)
from medssr_hub.generation.routes import CONSTRAINTS, ROUTES
from medssr_hub.generation.servers import ServerPool, is_retryable, reach_servers_offline
from medssr_hub.modeling import load_tokenizer, model_type_of
from medssr_hub.resolve import resolve_model
from medssr_hub.utils import HTTPClient, TransportError, describe_error

logger = logging.getLogger(__name__)


class EndpointBackend:
    """A TGI / OpenAI-compatible server. `route='chat'` uses /v1/chat/completions, `'completions'`
    /v1/completions (raw text; chat messages are rendered with `tokenizer`'s chat template first), `'tgi'`
    TGI's native text-generation route (raw prompts, `grammar` for constrained answers)."""

    name = "endpoint"
    capabilities = Capabilities(is_async=True)

    def __init__(
        self,
        base_url: str | Sequence[str],
        model: str | None = None,
        route: str = "chat",
        token: str | None = None,
        token_env: str | None = None,
        max_concurrency: int = 8,
        max_retries: int = 4,
        timeout: float = 120.0,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
        tokenizer: str | None = None,
        constraint: str = "none",
    ):
        if route not in ROUTES:
            raise InputError(f"route must be one of {tuple(ROUTES)}, got {route!r}")
        if constraint not in CONSTRAINTS:
            raise InputError(f"constraint must be one of {CONSTRAINTS}, got {constraint!r}")
        self.constraint = constraint
        urls = [base_url] if isinstance(base_url, str) else list(base_url)
        if not urls or not all(isinstance(u, str) and u for u in urls):
            raise InputError(f"base_url must be a URL or a list of URLs, got {base_url!r}")
        # Several servers: each request goes to the one with the fewest requests in flight.
        self.pool = ServerPool(urls)
        self.servers = self.pool.servers
        if route != "completions":  # the completions route has its own HTTP client
            reach_servers_offline(urls)
        self.base_url = self.servers[0].url
        self.model = model
        self._asked_model = False
        self.route = route
        self.wire = ROUTES[route](self)
        # The server's own token: `token`, or the environment variable `token_env` names; else none. The
        # HF token (HF_TOKEN, the login) is for the Hub only and never reaches an inference server.
        if token_env is not None and not os.environ.get(token_env):
            raise InputError(f"endpoint token_env names {token_env}, which is not set in the environment")
        self._token = token or (os.environ[token_env] if token_env else None)
        self.max_concurrency = max(1, max_concurrency)
        self.max_retries = max(0, max_retries)
        self.timeout = timeout
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.tokenizer_name = tokenizer
        self._tokenizer = None
        self._server_honours_n: bool | None = None
        self._warned_no_bias = False
        self._sessions: dict[str, object] | None = None
        self.stats = BackendStats()

    def __repr__(self) -> str:  # never show the token
        urls = [s.url for s in self.servers]
        return f"EndpointBackend(base_url={urls if len(urls) > 1 else urls[0]!r}, route={self.route!r}, model={self.model!r})"

    # -- public API ----------------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def session(self):
        """One client, so one connection pool, for every `agenerate` call inside the block (callers that send
        many small batches, such as synthesis chaining a question's answer pass to its generation)."""
        async with contextlib.AsyncExitStack() as stack:
            self._sessions = {
                s.url: await stack.enter_async_context(self.wire.client(s.url)) for s in self.servers
            }
            try:
                yield self
            finally:
                self._sessions = None

    @property
    def tokenizer(self):
        """The tokenizer named by `tokenizer=` (for logit_bias ids and TGI chat rendering), loaded once."""
        if self._tokenizer is None and self.tokenizer_name is not None:
            path, revision = resolve_model(self.tokenizer_name)
            self._tokenizer = load_tokenizer(path, revision)
        return self._tokenizer

    @cached_property
    def model_type(self) -> str | None:
        """The served model's family, from the config beside `tokenizer=` (None without one)."""
        if self.tokenizer_name is None:
            return None
        return model_type_of(*resolve_model(self.tokenizer_name))

    def generate(
        self,
        prompts: Sequence[Prompt],
        params: SamplingParams,
        *,
        seeds: Sequence[int] | None = None,
        on_complete: OnComplete | None = None,
        progress: bool = True,
    ) -> list[Completion]:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(
                self.agenerate(prompts, params, seeds=seeds, on_complete=on_complete, progress=progress)
            )
        raise RuntimeError(
            "EndpointBackend.generate was called inside an event loop; await agenerate() instead"
        )

    async def agenerate(
        self,
        prompts: Sequence[Prompt],
        params: SamplingParams,
        *,
        seeds: Sequence[int] | None = None,
        on_complete: OnComplete | None = None,
        progress: bool = True,
    ) -> list[Completion]:
        seeds = prompt_seeds(params, len(prompts), seeds)
        if self._must_ask_model():
            self.model = await self.served_model()
        done: dict[int, dict[int, Sample]] = {i: {} for i in range(len(prompts))}
        prompt_tokens: dict[int, int | None] = {}
        results: dict[int, Completion] = {}
        semaphore = asyncio.Semaphore(self.max_concurrency)
        bar = tqdm(
            total=len(prompts) * params.n, desc="generate (endpoint)", unit="sample", disable=not progress
        )

        async with contextlib.AsyncExitStack() as stack:
            clients = self._sessions or {
                s.url: await stack.enter_async_context(self.wire.client(s.url)) for s in self.servers
            }

            async def one_prompt(i: int) -> None:
                first = 0
                if params.n > 1 and self._server_honours_n is not False and self.wire.honours_n:
                    async with semaphore:
                        got, ptoks = await self._request(clients, prompts[i], params, seeds[i], 0, params.n)
                    if self._server_honours_n is None:
                        self._server_honours_n = len(got) >= params.n
                        if not self._server_honours_n:
                            logger.info(
                                "%s ignores n; emulating n samples with distinct seeds", self.base_url
                            )
                    for s in got[: params.n]:
                        done[i][first] = s
                        first += 1
                    prompt_tokens[i] = ptoks
                    bar.update(min(len(got), params.n))

                async def one_sample(j: int) -> None:
                    async with semaphore:
                        got, ptoks = await self._request(clients, prompts[i], params, seeds[i], j, 1)
                    done[i][j] = got[0]
                    prompt_tokens[i] = ptoks
                    bar.update(1)

                await asyncio.gather(*(one_sample(j) for j in range(first, params.n)))
                results[i] = Completion(
                    samples=[done[i][j] for j in range(params.n)], prompt_tokens=prompt_tokens[i]
                )
                self.stats.samples += params.n
                if on_complete is not None:
                    on_complete(i, results[i])

            # The first prompt goes alone when n > 1, so we learn whether the server honours `n` before
            # sending the rest.
            order = list(range(len(prompts)))
            tasks: list[asyncio.Task] = []
            try:
                if order and params.n > 1 and self._server_honours_n is None and self.wire.honours_n:
                    await one_prompt(order.pop(0))
                tasks = [asyncio.create_task(one_prompt(i)) for i in order]
                if tasks:
                    finished, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
                    failed = [t for t in finished if t.exception() is not None]
                    if failed:
                        for t in pending:
                            t.cancel()
                        await asyncio.gather(*pending, return_exceptions=True)
                        raise failed[0].exception()
            except GenerationError as error:
                error.partial = dict(results)
                error.partial_samples = {i: dict(s) for i, s in done.items() if s and i not in results}
                raise
            finally:
                bar.close()
        self.stats.prompts += len(prompts)
        return [results[i] for i in range(len(prompts))]

    def close(self) -> None:
        """Nothing to free: connections live inside each call (or a `session()` block)."""

    def identity(self) -> str:
        """What answers the requests: `endpoint.model`, else the model the server says it serves, else its
        URL (TGI's native route names no model). Part of every resumed item's identity."""
        if self._must_ask_model():
            self.model = asyncio.run(self.served_model())
        return self.model or self.base_url

    def _must_ask_model(self) -> bool:
        """True once, when no model is configured: the server is asked for its model one time only."""
        ask = self.model is None and self.route != "tgi" and not self._asked_model
        self._asked_model = True
        return ask

    async def served_model(self) -> str | None:
        """The model the first server serves (`GET /v1/models`), for OpenAI servers that check the request's
        `model` (vLLM answers an unknown one with 404); None where the server does not list its models."""
        url = self.servers[0].url
        headers = {"authorization": f"Bearer {self._token}"} if self._token else {}
        try:
            async with HTTPClient(
                base_url=url,
                headers=headers,
                timeout=self.timeout,
                event_hooks={"response": [abound_response]},
            ) as client:
                response = await client.get("/v1/models")
                hf_raise_for_status(response)
                served = [
                    m["id"] for m in response.json().get("data", []) if isinstance(m, dict) and m.get("id")
                ]
        except (HfHubHTTPError, TransportError, ValueError, AttributeError) as e:
            logger.info("%s does not list its models (%s): requests name no model", url, describe_error(e))
            return None
        if served:
            logger.info("endpoint.model not set: using %s, which %s serves", served[0], url)
        return served[0] if served else None

    # -- one request ---------------------------------------------------------------------------------
    async def _request(self, clients, prompt, params: SamplingParams, prompt_seed: int, j: int, n: int):
        """One request, retried by tenacity: a retryable failure (`servers.is_retryable`) waits tenacity's
        full-jitter exponential back-off (`backoff` doubling up to `max_backoff`, or the server's
        Retry-After if longer, capped the same), up to `max_retries` times; a failure that sets its server
        aside moves the request to another server at once, without counting."""
        seed = sample_seed(prompt_seed, j) % (2**31)
        last: dict = {"server": None, "moved": False, "counted": 0}
        backoff = wait_random_exponential(multiplier=self.backoff, max=self.max_backoff)

        def wait(state: RetryCallState) -> float:
            if last["moved"]:
                return 0.0
            error = state.outcome.exception()
            retry_after = getattr(getattr(error, "response", None), "headers", {}).get("retry-after")
            delay = backoff(state)
            if retry_after and retry_after.isdigit():
                delay = max(delay, min(float(retry_after), self.max_backoff))
            return delay

        def log_retry(state: RetryCallState) -> None:
            self.stats.retries += 1
            if not last["moved"]:
                logger.warning(
                    "endpoint %s: %s; retry %d/%d in %.1fs",
                    last["server"].url,
                    describe_error(state.outcome.exception()),
                    last["counted"],
                    self.max_retries,
                    state.upcoming_sleep,
                )

        async def attempt():
            server = last["server"] = self.pool.pick()
            server.outstanding += 1
            server.requests += 1
            try:
                # `timeout` bounds the whole attempt, not each read: a server trickling a byte a second
                # would otherwise hold a request for ever (httpx's timeouts are per read).
                result = await asyncio.wait_for(
                    self.wire.request(clients[server.url], prompt, params, seed, n), self.timeout
                )
                server.failures = 0
                return result
            except Exception as error:
                last["moved"] = is_retryable(error) and self.pool.failed(server, error)
                last["counted"] += 0 if last["moved"] else 1
                raise
            finally:
                server.outstanding -= 1

        retrying = AsyncRetrying(
            retry=retry_if_exception(is_retryable),
            stop=lambda state: not last["moved"] and last["counted"] > self.max_retries,
            wait=wait,
            before_sleep=log_retry,
            reraise=True,
        )
        try:
            return await retrying(attempt)
        except GenerationError:
            raise
        except Exception as error:  # not retryable, or out of retries
            server = last["server"]
            status = getattr(getattr(error, "response", None), "status_code", None)
            hint = (
                f"; does it serve model {self.model!r}? Set endpoint.model to one that "
                f"{server.url}/v1/models lists"
                if status == 404 and self.route != "tgi"
                else ""
            )
            raise GenerationError(
                f"endpoint {server.url} failed after {last['counted']} attempt(s): {describe_error(error)}"
                + hint
            ) from error


def from_settings(*, options, **_) -> EndpointBackend:
    """The builder's entry (`generation.builder.BACKENDS`): a server is set by its own options alone (the
    config's `endpoint:`); the model is whatever the server serves."""
    return EndpointBackend(**options)
