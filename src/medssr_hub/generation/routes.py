"""The endpoint backend's wire dialects, one route object each:

- `chat`: /v1/chat/completions, through huggingface_hub's AsyncInferenceClient;
- `completions`: /v1/completions, raw text (as the official evaluation sends base-model prompts);
- `tgi`: TGI's native /generate, through the same client (one sample per request).

A route builds its client and one request, with the constraint in the server's dialect (`constraint`:
llama.cpp's GBNF `grammar`, vLLM's `structured_outputs`, or logit_bias only). It reads the backend's
settings (model, token, timeout, tokenizer, constraint) and adds to its stats; picking a server and
retrying are the backend's.
"""

from __future__ import annotations

import json
import logging
from abc import ABC, abstractmethod

from huggingface_hub import AsyncInferenceClient
from huggingface_hub.utils import hf_raise_for_status

from medssr_hub.bounds import abound_response
from medssr_hub.errors import InputError
from medssr_hub.generation.base import Prompt, Sample, SamplingParams, first_token_ids, server_text
from medssr_hub.generation.servers import wrong_shape
from medssr_hub.utils import HTTPClient

logger = logging.getLogger(__name__)

# How the OpenAI routes send constraints (`SamplingParams.regex` / `grammar` / `allowed_tokens`), in each
# server's current dialect:
# - "gbnf": llama.cpp's `grammar` field (a GBNF grammar), on /v1/chat/completions and /v1/completions
#   (llama.cpp server README, "POST /completion ... grammar"; llama-cpp-python's server takes the same);
# - "vllm": `structured_outputs: {choice | regex | grammar}` (vLLM docs, "Structured Outputs": the
#   guided_choice / guided_regex / guided_grammar fields were removed in v0.12.0);
# - "none": prompting and logit_bias only.
# TGI takes a regex `grammar` on its native route (`route: tgi`).
CONSTRAINTS = ("none", "gbnf", "vllm")


class Route(ABC):
    """One wire dialect of an endpoint backend."""

    name = ""
    honours_n = True  # whether one request may ask for n samples

    def __init__(self, backend):
        self.backend = backend

    def client(self, url: str):
        # Without a token of its own, an empty authorization header keeps huggingface_hub from sending the
        # HF token; the request hook (servers.py) drops it.
        headers = None if self.backend._token else {"authorization": ""}
        return AsyncInferenceClient(
            base_url=url, token=self.backend._token, headers=headers, timeout=self.backend.timeout
        )

    def render(self, prompt: Prompt, params: SamplingParams) -> str:
        """Raw text for the raw routes: chat messages through the tokenizer's chat template, as the official
        evaluation renders chat models' prompts, such that the server's ids are the in-process backends'
        (`server_text`)."""
        if isinstance(prompt, str):
            return prompt
        if self.backend.tokenizer_name is None:
            raise InputError(f"route {self.name} takes raw prompts; set `tokenizer` to render chat messages")
        return server_text(self.backend.tokenizer, prompt, params.script_bos)

    def logit_bias(self, params: SamplingParams) -> dict[str, float] | None:
        if params.bias_ids:
            return {str(t): params.allowed_bias for t in params.bias_ids}
        if not params.allowed_tokens:
            return None
        if self.backend.tokenizer_name is None:
            if not self.backend._warned_no_bias:
                logger.warning(
                    "no tokenizer configured for %s: allowed_tokens sent without logit_bias",
                    self.backend.base_url,
                )
                self.backend._warned_no_bias = True
            return None
        return {
            str(t): params.allowed_bias
            for t in first_token_ids(self.backend.tokenizer, params.allowed_tokens)
        }

    def extra_body(self, params: SamplingParams) -> dict | None:
        """Server-specific fields of an OpenAI request: top_k, min_tokens (vLLM's; servers without it ignore
        it), and the constraint in the server's dialect."""
        body = {"top_k": params.top_k} if params.top_k and not params.greedy else {}
        if params.min_tokens:
            body["min_tokens"] = params.min_tokens
        letters = sorted({t.strip() for t in params.allowed_tokens or ()})
        if self.backend.constraint == "gbnf":
            if letters:
                body["grammar"] = 'root ::= " "? (' + " | ".join(f'"{t}"' for t in letters) + ")"
            elif params.grammar:
                body["grammar"] = params.grammar
        elif self.backend.constraint == "vllm":
            if letters:
                body["structured_outputs"] = {"choice": letters}
            elif params.regex:
                body["structured_outputs"] = {"regex": params.regex}
            elif params.grammar:
                body["structured_outputs"] = {"grammar": params.grammar}
        return body or None

    def logit_bias_for(self, params: SamplingParams) -> dict[str, float] | None:
        """logit_bias where it is the constraint (no grammar dialect), or the recovery pass's own ids."""
        return self.logit_bias(params) if self.backend.constraint == "none" or params.bias_ids else None

    @abstractmethod
    async def request(self, client, prompt, params: SamplingParams, seed: int, n: int):
        """One request: (the samples, the prompt's token count or None)."""


class CompletionsRoute(Route):
    name = "completions"

    def client(self, url: str):
        # huggingface_hub's InferenceClient has no text-completion (/v1/completions) method: this route is
        # one POST on the HTTP client huggingface_hub itself uses, its errors raised the same way.
        headers = {"authorization": f"Bearer {self.backend._token}"} if self.backend._token else {}
        return HTTPClient(
            base_url=url,
            headers=headers,
            timeout=self.backend.timeout,
            event_hooks={"response": [abound_response]},
        )

    async def request(self, client, prompt, params: SamplingParams, seed: int, n: int):
        body = {
            **({"model": self.backend.model} if self.backend.model else {}),
            "prompt": self.render(prompt, params),
            "max_tokens": params.max_tokens,
            "temperature": params.temperature,
            "seed": seed,
            **({"top_p": params.top_p} if not params.greedy else {}),
            **({"n": n} if n > 1 else {}),
            **({"stop": list(params.stop)} if params.stop else {}),
            **({"logit_bias": bias} if (bias := self.logit_bias_for(params)) else {}),
            **(self.extra_body(params) or {}),
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
            self.backend.stats.completion_tokens += usage.get("completion_tokens") or 0
            return samples, usage.get("prompt_tokens")


class ChatRoute(Route):
    name = "chat"

    async def request(self, client, prompt, params: SamplingParams, seed: int, n: int):
        messages = prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
        response = await client.chat_completion(
            messages,
            model=self.backend.model,
            max_tokens=params.max_tokens,
            temperature=params.temperature,
            top_p=params.top_p if not params.greedy else None,
            seed=seed,
            n=n if n > 1 else None,
            stop=list(params.stop) or None,
            logit_bias=self.logit_bias_for(params),
            extra_body=self.extra_body(params),
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
            self.backend.stats.completion_tokens += usage.completion_tokens if usage is not None else 0
            return samples, (usage.prompt_tokens if usage is not None else None)


class TGIRoute(Route):
    name = "tgi"
    honours_n = False

    async def request(self, client, prompt, params: SamplingParams, seed: int, n: int = 1):
        prompt = self.render(prompt, params)
        grammar = {"type": "regex", "value": params.regex} if params.regex else None
        if params.allowed_tokens:
            alternatives = "|".join(sorted({t.strip() for t in params.allowed_tokens}))
            grammar = {"type": "regex", "value": f" ?({alternatives})"}
        if params.bias_ids and not self.backend._warned_no_bias:  # TGI's /generate takes no logit_bias
            logger.warning("route tgi: token ids cannot be biased, so the recovery pass runs unconstrained")
            self.backend._warned_no_bias = True
        response = await client.text_generation(
            prompt,
            details=True,
            model=self.backend.model,
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
        self.backend.stats.completion_tokens += tokens or 0
        finish = "length" if details is not None and details.finish_reason == "length" else "stop"
        text = response.generated_text
        for stop in params.stop:  # TGI keeps the stop sequence in the text; OpenAI servers drop it
            if text.endswith(stop):
                text = text[: -len(stop)]
        return [Sample(text=text, finish_reason=finish, completion_tokens=tokens)], None


ROUTES = {route.name: route for route in (ChatRoute, CompletionsRoute, TGIRoute)}
