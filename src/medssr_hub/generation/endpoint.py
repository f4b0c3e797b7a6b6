"""Generation through a TGI or OpenAI-compatible server (vLLM, llama.cpp, SGLang).

Routes: `chat` (/v1/chat/completions, through huggingface_hub's AsyncInferenceClient), `completions`
(/v1/completions: raw text, as the official evaluation sends base-model prompts) and `tgi` (TGI's native
/generate, through the same client).

Requests run concurrently (bounded), each retried with exponential backoff on 429/5xx, timeouts and
connection errors. Finished completions are handed to `on_complete` as they arrive, and a batch that
fails for good raises `GenerationError` carrying everything that did finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
from collections.abc import Sequence
from functools import cached_property
from urllib.parse import urlsplit

from huggingface_hub import AsyncInferenceClient, constants, set_async_client_factory
from huggingface_hub.errors import HfHubHTTPError, InferenceTimeoutError
from huggingface_hub.utils import hf_raise_for_status
from huggingface_hub.utils._http import async_hf_request_event_hook, default_async_client_factory
from tqdm.auto import tqdm

from medssr_hub.errors import InputError
from medssr_hub.generation.base import (
    BackendStats,
    Completion,
    GenerationError,
    OnComplete,
    Prompt,
    Sample,
    SamplingParams,
    first_token_ids,
    prompt_seeds,
    sample_seed,
)
from medssr_hub.modeling import load_tokenizer, model_type_of
from medssr_hub.resolve import resolve_model
from medssr_hub.utils import HTTPClient, TransportError, describe_error

logger = logging.getLogger(__name__)

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
ROUTES = ("chat", "completions", "tgi")
# How the OpenAI routes send constraints (`SamplingParams.regex` / `grammar` / `allowed_tokens`), in each
# server's current dialect:
# - "gbnf": llama.cpp's `grammar` field (a GBNF grammar), on /v1/chat/completions and /v1/completions
#   (llama.cpp server README, "POST /completion ... grammar"; llama-cpp-python's server takes the same);
# - "vllm": `structured_outputs: {choice | regex | grammar}` (vLLM docs, "Structured Outputs": the
#   guided_choice / guided_regex / guided_grammar fields were removed in v0.12.0);
# - "none": prompting and logit_bias only.
# TGI takes a regex `grammar` on its native route (`route: tgi`).
CONSTRAINTS = ("none", "gbnf", "vllm")


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


class EndpointBackend:
    """A TGI / OpenAI-compatible server. `route='chat'` uses /v1/chat/completions, `'completions'`
    /v1/completions (raw text; chat messages are rendered with `tokenizer`'s chat template first), `'tgi'`
    TGI's native text-generation route (raw prompts, `grammar` for constrained answers)."""

    name = "endpoint"

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
            raise InputError(f"route must be one of {ROUTES}, got {route!r}")
        if constraint not in CONSTRAINTS:
            raise InputError(f"constraint must be one of {CONSTRAINTS}, got {constraint!r}")
        self.constraint = constraint
        urls = [base_url] if isinstance(base_url, str) else list(base_url)
        if not urls or not all(isinstance(u, str) and u for u in urls):
            raise InputError(f"base_url must be a URL or a list of URLs, got {base_url!r}")
        # Several servers: each request goes to the one with the fewest requests in flight.
        self.servers = [Server(u) for u in urls]
        if route != "completions":  # the completions route has its own HTTP client
            reach_servers_offline(urls)
        self.base_url = self.servers[0].url
        self.model_name = model or self.base_url
        self.model = model
        self._asked_model = False
        self.route = route
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
                s.url: await stack.enter_async_context(self._client(s.url)) for s in self.servers
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

    def _client(self, url: str):
        if self.route == "completions":
            # huggingface_hub's InferenceClient has no text-completion (/v1/completions) method: that route
            # is one POST on the HTTP client huggingface_hub itself uses, its errors raised the same way.
            headers = {"authorization": f"Bearer {self._token}"} if self._token else {}
            return HTTPClient(base_url=url, headers=headers, timeout=self.timeout)
        # Without a token of its own, an empty authorization header keeps huggingface_hub from sending the
        # HF token; the request hook drops it.
        headers = None if self._token else {"authorization": ""}
        return AsyncInferenceClient(base_url=url, token=self._token, headers=headers, timeout=self.timeout)

    def _render(self, prompt: Prompt) -> str:
        """Raw text for the raw routes: chat messages through the tokenizer's chat template (a final
        assistant message is continued), as the official evaluation renders chat models' prompts."""
        if isinstance(prompt, str):
            return prompt
        if self.tokenizer_name is None:
            raise InputError(f"route {self.route} takes raw prompts; set `tokenizer` to render chat messages")
        if prompt and prompt[-1]["role"] == "assistant":
            return self.tokenizer.apply_chat_template(prompt, tokenize=False, continue_final_message=True)
        return self.tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)

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
                s.url: await stack.enter_async_context(self._client(s.url)) for s in self.servers
            }

            async def one_prompt(i: int) -> None:
                first = 0
                if params.n > 1 and self._server_honours_n is not False and self.route != "tgi":
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
                if order and params.n > 1 and self._server_honours_n is None and self.route != "tgi":
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

    def model_id(self) -> str:
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
            async with HTTPClient(base_url=url, headers=headers, timeout=self.timeout) as client:
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
    def _pick(self) -> Server:
        """The server with the fewest requests in flight, among those not set aside."""
        live = [s for s in self.servers if not s.set_aside]
        if not live:
            raise GenerationError(
                "every endpoint server was set aside after repeated failures: "
                + ", ".join(s.url for s in self.servers)
            )
        return min(live, key=lambda s: (s.outstanding, s.requests))

    def _failed(self, server: Server, error: BaseException) -> bool:
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

    async def _request(self, clients, prompt, params: SamplingParams, prompt_seed: int, j: int, n: int):
        seed = sample_seed(prompt_seed, j) % (2**31)
        attempt = 0
        while True:
            server = self._pick()
            client = clients[server.url]
            server.outstanding += 1
            server.requests += 1
            try:
                if self.route == "chat":
                    result = await self._chat(client, prompt, params, seed, n)
                elif self.route == "completions":
                    result = await self._completions(client, prompt, params, seed, n)
                else:
                    result = await self._tgi(client, prompt, params, seed)
                server.failures = 0
                return result
            except Exception as error:  # classified below: retried, or raised as GenerationError
                if is_retryable(error) and self._failed(server, error):
                    self.stats.retries += 1
                    continue  # another server takes it now; the failed one is out of the rotation
                if not is_retryable(error) or attempt >= self.max_retries:
                    status = getattr(getattr(error, "response", None), "status_code", None)
                    hint = (
                        f"; does it serve model {self.model!r}? Set endpoint.model to one that "
                        f"{server.url}/v1/models lists"
                        if status == 404 and self.route != "tgi"
                        else ""
                    )
                    raise GenerationError(
                        f"endpoint {server.url} failed after {attempt + 1} attempt(s): {describe_error(error)}"
                        + hint
                    ) from error
                delay = min(self.max_backoff, self.backoff * 2**attempt) * (0.5 + random.random())
                retry_after = getattr(getattr(error, "response", None), "headers", {}).get("retry-after")
                if retry_after and retry_after.isdigit():
                    delay = max(delay, min(float(retry_after), self.max_backoff))
                attempt += 1
                self.stats.retries += 1
                logger.warning(
                    "endpoint %s: %s; retry %d/%d in %.1fs",
                    server.url,
                    describe_error(error),
                    attempt,
                    self.max_retries,
                    delay,
                )
                await asyncio.sleep(delay)
            finally:
                server.outstanding -= 1

    def _logit_bias(self, params: SamplingParams) -> dict[str, float] | None:
        if params.bias_ids:
            return {str(t): params.allowed_bias for t in params.bias_ids}
        if not params.allowed_tokens:
            return None
        if self.tokenizer_name is None:
            if not self._warned_no_bias:
                logger.warning(
                    "no tokenizer configured for %s: allowed_tokens sent without logit_bias", self.base_url
                )
                self._warned_no_bias = True
            return None
        return {str(t): params.allowed_bias for t in first_token_ids(self.tokenizer, params.allowed_tokens)}

    def _extra_body(self, params: SamplingParams) -> dict | None:
        """Server-specific fields of an OpenAI request: top_k, and the constraint in the server's dialect."""
        body = {"top_k": params.top_k} if params.top_k and not params.greedy else {}
        letters = sorted({t.strip() for t in params.allowed_tokens or ()})
        if self.constraint == "gbnf":
            if letters:
                body["grammar"] = 'root ::= " "? (' + " | ".join(f'"{t}"' for t in letters) + ")"
            elif params.grammar:
                body["grammar"] = params.grammar
        elif self.constraint == "vllm":
            if letters:
                body["structured_outputs"] = {"choice": letters}
            elif params.regex:
                body["structured_outputs"] = {"regex": params.regex}
            elif params.grammar:
                body["structured_outputs"] = {"grammar": params.grammar}
        return body or None

    def _logit_bias_for(self, params: SamplingParams) -> dict[str, float] | None:
        """logit_bias where it is the constraint (no grammar dialect), or the recovery pass's own ids."""
        return self._logit_bias(params) if self.constraint == "none" or params.bias_ids else None

    async def _completions(self, client, prompt, params: SamplingParams, seed: int, n: int):
        body = {
            **({"model": self.model} if self.model else {}),
            "prompt": self._render(prompt),
            "max_tokens": params.max_tokens,
            "temperature": params.temperature,
            "seed": seed,
            **({"top_p": params.top_p} if not params.greedy else {}),
            **({"n": n} if n > 1 else {}),
            **({"stop": list(params.stop)} if params.stop else {}),
            **({"logit_bias": bias} if (bias := self._logit_bias_for(params)) else {}),
            **(self._extra_body(params) or {}),
        }
        response = await client.post("/v1/completions", json=body)
        hf_raise_for_status(response)
        data = response.json()
        choices = data.get("choices") if isinstance(data, dict) else None
        if not choices:
            raise json.JSONDecodeError("response has no choices", response.text[:200], 0)
        with wrong_shape(response.text):
            usage = data.get("usage") or {}
            samples = [
                Sample(
                    text=choice.get("text") or "",
                    finish_reason="length" if choice.get("finish_reason") == "length" else "stop",
                    completion_tokens=usage.get("completion_tokens") if len(choices) == 1 else None,
                )
                for choice in choices
            ]
            self.stats.completion_tokens += usage.get("completion_tokens") or 0
            return samples, usage.get("prompt_tokens")

    async def _chat(self, client, prompt, params: SamplingParams, seed: int, n: int):
        messages = prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
        response = await client.chat_completion(
            messages,
            model=self.model,
            max_tokens=params.max_tokens,
            temperature=params.temperature,
            top_p=params.top_p if not params.greedy else None,
            seed=seed,
            n=n if n > 1 else None,
            stop=list(params.stop) or None,
            logit_bias=self._logit_bias_for(params),
            extra_body=self._extra_body(params),
        )
        with wrong_shape(str(response)):
            if not response.choices:
                raise json.JSONDecodeError("response has no choices", "", 0)
            usage = getattr(response, "usage", None)
            per_sample_tokens = (
                usage.completion_tokens if usage is not None and len(response.choices) == 1 else None
            )
            samples = [
                Sample(
                    text=choice.message.content or "",
                    finish_reason="length" if choice.finish_reason == "length" else "stop",
                    completion_tokens=per_sample_tokens,
                )
                for choice in response.choices
            ]
            self.stats.completion_tokens += usage.completion_tokens if usage is not None else 0
            return samples, (usage.prompt_tokens if usage is not None else None)

    async def _tgi(self, client, prompt, params: SamplingParams, seed: int):
        prompt = self._render(prompt)
        grammar = {"type": "regex", "value": params.regex} if params.regex else None
        if params.allowed_tokens:
            alternatives = "|".join(sorted({t.strip() for t in params.allowed_tokens}))
            grammar = {"type": "regex", "value": f" ?({alternatives})"}
        if params.bias_ids and not self._warned_no_bias:  # TGI's /generate takes no logit_bias
            logger.warning("route tgi: token ids cannot be biased, so the recovery pass runs unconstrained")
            self._warned_no_bias = True
        response = await client.text_generation(
            prompt,
            details=True,
            model=self.model,
            max_new_tokens=params.max_tokens,
            do_sample=not params.greedy,
            temperature=params.temperature if not params.greedy else None,
            top_p=params.top_p if not params.greedy and params.top_p < 1 else None,
            top_k=params.top_k if not params.greedy and params.top_k else None,
            seed=seed,
            stop=list(params.stop) or None,
            grammar=grammar,
        )
        details = response.details
        tokens = details.generated_tokens if details is not None else None
        self.stats.completion_tokens += tokens or 0
        finish = "length" if details is not None and details.finish_reason == "length" else "stop"
        text = response.generated_text
        for stop in params.stop:  # TGI keeps the stop sequence in the text; OpenAI servers drop it
            if text.endswith(stop):
                text = text[: -len(stop)]
        return [Sample(text=text, finish_reason=finish, completion_tokens=tokens)], None
