"""The endpoint backend against a real llama.cpp server on 127.0.0.1 (and a fault-injecting proxy)."""

import contextlib
import json
import logging
import threading

import pandas as pd
import pytest

from medssr_hub.generation import GenerationError, SamplingParams
from medssr_hub.generation.endpoint import EndpointBackend
from tests.support.fault_proxy import FaultProxy

pytestmark = pytest.mark.server

QUESTIONS = [
    [{"role": "user", "content": f"Name a medical use of drug number {i}. One sentence."}] for i in range(6)
]
FAST = {"max_retries": 3, "backoff": 0.05, "max_backoff": 0.2}


@pytest.fixture
def proxy(llama_server):
    p = FaultProxy(llama_server.url)
    yield p
    p.close()


def test_chat_samples_are_seeded_and_n_is_emulated(proxy, caplog):
    backend = EndpointBackend(proxy.url, max_concurrency=2)
    params = SamplingParams(n=3, max_tokens=12, seed=5)
    with caplog.at_level(logging.INFO):
        first = backend.generate(QUESTIONS[:2], params, progress=False)
    assert backend._server_honours_n is False  # llama.cpp answers one choice whatever n says
    assert "ignores n" in caplog.text
    assert [len(c.samples) for c in first] == [3, 3]
    assert all(
        s.completion_tokens and s.finish_reason in ("stop", "length") for c in first for s in c.samples
    )
    assert len(set(first[0].texts)) > 1

    def seeds_by_prompt(bodies):
        seen = {}
        for body in bodies:
            seen.setdefault(body["messages"][0]["content"], []).append(body["seed"])
        return {k: sorted(v) for k, v in seen.items()}

    sent = seeds_by_prompt(proxy.bodies)
    assert len(sent) == 2 and all(len(set(v)) == 3 for v in sent.values())  # distinct seed per sample
    assert proxy.bodies[0]["n"] == 3 and proxy.bodies[0]["top_k"] == 20 and proxy.bodies[0]["top_p"] == 0.95
    # A fresh client sends exactly the same requests: samples are reproducible wherever the server is.
    proxy.bodies.clear()
    EndpointBackend(proxy.url, max_concurrency=2).generate(QUESTIONS[:2], params, progress=False)
    assert seeds_by_prompt(proxy.bodies) == sent


def test_logit_bias_constrains_letters(llama_server, embedded_dir):
    chat = [
        {"role": "user", "content": "Which is a fruit?\nA. Car\nB. Apple\nC. Rock"},
        {"role": "assistant", "content": "I think so."},
        {"role": "user", "content": "Respond with one option only. The answer is "},
    ]
    backend = EndpointBackend(llama_server.url, tokenizer=str(embedded_dir))
    out = backend.generate(
        [chat] * 3,
        SamplingParams(n=1, max_tokens=1, temperature=1.0, allowed_tokens=("A", "B", "C")),
        progress=False,
    )
    assert all(c.samples[0].text.strip() in {"A", "B", "C"} for c in out)


def test_gbnf_grammar_constrains_the_chat_route(llama_server, benchmarks_dir):
    """llama.cpp's `grammar` on the chat route: the layout of synthesized questions, and answer letters."""
    from medssr_hub.records import load_records
    from medssr_hub.synthesis.prompts import (
        LAYOUT_GBNF,
        LAYOUT_REGEX,
        ParseError,
        parse_generated,
        seed_prompt,
    )

    seeds, _ = load_records(benchmarks_dir / "medqa.json")
    prompts = [seed_prompt(seeds[i : i + 1]) for i in range(4)]
    params = SamplingParams(n=1, max_tokens=700, temperature=0.7, regex=LAYOUT_REGEX, grammar=LAYOUT_GBNF)

    def parsed(backend) -> int:
        ok = 0
        for c in backend.generate(prompts, params, progress=False):
            text = c.samples[0].text
            with contextlib.suppress(ParseError):
                ok += parse_generated(text, prefilled=not text.startswith("Question:"))[2] is not None
        return ok

    constrained = EndpointBackend(llama_server.url, constraint="gbnf")
    assert parsed(constrained) == len(prompts)  # every sample is a question with options and a key
    assert parsed(EndpointBackend(llama_server.url)) < len(prompts)  # unconstrained, the 135M model drifts
    letters = constrained.generate(
        [[{"role": "user", "content": "Which is a fruit?\nA. Car\nB. Apple\nC. Rock\nThe answer is"}]] * 3,
        SamplingParams(n=1, max_tokens=2, temperature=1.0, allowed_tokens=("A", "B", "C")),
        progress=False,
    )
    assert all(c.samples[0].text.strip() in {"A", "B", "C"} for c in letters)
    with pytest.raises(ValueError, match="constraint"):
        EndpointBackend(llama_server.url, constraint="regex")


def test_tgi_native_route(proxy, embedded_dir):
    backend = EndpointBackend(proxy.url, route="tgi", tokenizer=str(embedded_dir))
    out = backend.generate(
        ["The capital of France is", QUESTIONS[0]],
        SamplingParams(temperature=0, max_tokens=8),
        progress=False,
    )
    assert all(c.samples[0].text for c in out)
    first = out[0].samples[0]
    assert (first.finish_reason, first.completion_tokens == 8) in {("length", True), ("stop", False)}
    # Requests run concurrently, so payloads arrive in any order.
    by_input = {p["inputs"]: p for p in proxy.tgi_payloads}
    assert by_input["The capital of France is"]["parameters"]["max_new_tokens"] == 8
    chat_inputs = [text for text in by_input if text != "The capital of France is"]
    assert len(chat_inputs) == 1 and chat_inputs[0].endswith("<|im_start|>assistant\n")  # rendered chat
    constrained = backend.generate(
        ["Answer with a letter:"],
        SamplingParams(temperature=0, max_tokens=1, allowed_tokens=("A", "B")),
        progress=False,
    )
    assert constrained and proxy.tgi_payloads[-1]["parameters"]["grammar"] == {
        "type": "regex",
        "value": " ?(A|B)",
    }
    backend.generate(
        ["Write a question:"], SamplingParams(max_tokens=4, regex="Question: .+"), progress=False
    )
    assert proxy.tgi_payloads[-1]["parameters"]["grammar"] == {"type": "regex", "value": "Question: .+"}


@pytest.mark.parametrize("fault", [503, 429, 500, "garbage", "slow"])
def test_transient_faults_are_retried(proxy, fault):
    proxy.script = [fault, fault]
    proxy.slow_seconds = 3.0
    backend = EndpointBackend(proxy.url, timeout=1.0, **FAST)
    out = backend.generate(QUESTIONS[:1], SamplingParams(temperature=0, max_tokens=6), progress=False)
    assert out[0].samples[0].text
    assert backend.stats.retries == 2
    assert proxy.requests == 3


def test_persistent_errors_end_with_a_clear_error_and_keep_finished_work(proxy):
    backend = EndpointBackend(proxy.url, max_concurrency=1, **FAST)
    finished = {}
    params = SamplingParams(temperature=0, max_tokens=4)
    ok = backend.generate(
        QUESTIONS[:2], params, on_complete=lambda i, c: finished.setdefault(i, c), progress=False
    )
    proxy.always = 503
    with pytest.raises(
        GenerationError, match=rf"endpoint {proxy.url} failed after 4 attempt\(s\): .*HTTP 503"
    ) as info:
        backend.generate(QUESTIONS[:2], params, progress=False)
    assert info.value.partial == {}
    assert len(ok) == len(finished) == 2
    # A client error is not retried.
    proxy.always = 400
    before = proxy.requests
    with pytest.raises(GenerationError, match="HTTP 400"):
        backend.generate(QUESTIONS[:1], params, progress=False)
    assert proxy.requests == before + 1


def test_token_is_sent_but_never_logged(proxy, caplog):
    secret = "hf_" + "x" * 30
    proxy.script = [503]
    backend = EndpointBackend(proxy.url, token=secret, **FAST)
    with caplog.at_level(logging.DEBUG):
        backend.generate(QUESTIONS[:1], SamplingParams(temperature=0, max_tokens=2), progress=False)
    assert proxy.seen_headers[-1].get("authorization") == f"Bearer {secret}"
    assert "retry 1/3" in caplog.text
    assert secret not in caplog.text and secret not in repr(backend)


@pytest.mark.parametrize("route", ["chat", "completions", "tgi"])
def test_the_hf_token_never_reaches_an_inference_server(proxy, monkeypatch, embedded_dir, route):
    """HF_TOKEN (a canary) is for the Hub: no request to the server carries it, on any route. The server's
    own token is sent when the config names one (`token_env`)."""
    canary = "hf_" + "K" * 32
    monkeypatch.setenv("HF_TOKEN", canary)
    prompts = QUESTIONS[:2] if route == "chat" else ["Question: name a vitamin.\nAnswer:"] * 2
    params = SamplingParams(temperature=0, max_tokens=2)
    before = len(proxy.seen_headers)
    EndpointBackend(proxy.url, route=route, **FAST).generate(prompts, params, progress=False)
    seen = proxy.seen_headers[before:]
    assert len(seen) >= 2 and not [h for h in seen if canary in json.dumps(h)]
    assert not [h for h in seen if "authorization" in h]
    monkeypatch.setenv("MY_SERVER_TOKEN", "server-secret")
    before = len(proxy.seen_headers)
    backend = EndpointBackend(proxy.url, route=route, token_env="MY_SERVER_TOKEN", **FAST)
    backend.generate(prompts, params, progress=False)
    seen = proxy.seen_headers[before:]
    assert seen and all(h.get("authorization") == "Bearer server-secret" for h in seen)
    with pytest.raises(ValueError, match="token_env names UNSET_TOKEN"):
        EndpointBackend(proxy.url, route=route, token_env="UNSET_TOKEN")


@pytest.mark.slow
def test_server_killed_mid_batch_keeps_every_finished_sample(fresh_llama_server):
    backend = EndpointBackend(fresh_llama_server.url, max_concurrency=1, **FAST)
    delivered = {}

    def on_complete(i, completion):
        delivered[i] = completion
        if len(delivered) == 2:
            threading.Thread(target=fresh_llama_server.stop).start()

    params = SamplingParams(n=2, max_tokens=8, seed=3)
    with pytest.raises(GenerationError, match=f"endpoint {fresh_llama_server.url} failed") as info:
        backend.generate(QUESTIONS, params, on_complete=on_complete, progress=False)
    error = info.value
    assert len(delivered) >= 2
    assert error.partial.keys() == delivered.keys()
    assert all(len(c.samples) == 2 for c in error.partial.values())
    assert set(error.partial).isdisjoint(error.partial_samples)


OFFICIAL_BASE_TEMPLATE = (  # the official script's COT_TEMPLATE, typed out from its source for comparison
    "You are a professional medical expert answering a multiple-choice medical question.\n"
    "Please think step by step and then provide exactly one final option.\n"
    "Format the final answer as: The answer is [LETTER].\n\n"
    "Question:\n{question}\n\n"
)


def test_base_model_evaluation_sends_the_papers_raw_template_as_completions(
    proxy, embedded_dir, benchmarks_dir, tmp_path
):
    """chat: false on route completions: the model receives exactly the official template (the question
    verbatim from the benchmark file), and the recovery pass continues the model's own raw text."""
    from medssr_hub.errors import ConfigError
    from medssr_hub.evaluation.evaluate import EvalConfig, Evaluator

    endpoint = {"base_url": proxy.url, "route": "completions", "tokenizer": str(embedded_dir), "model": "m"}
    settings = dict(chat=False, backend="endpoint", benchmarks=["medqa"], max_items=3, num_samples=2)
    with pytest.raises(ConfigError, match="route to completions"):
        EvalConfig(**settings, endpoint={**endpoint, "route": "chat"})
    results = Evaluator(
        EvalConfig(**settings, endpoint=endpoint, max_tokens=8, output_dir=str(tmp_path / "ev"))
    ).run()
    assert results["model"] == "m"  # the model the server serves (endpoint.model), never "embedded"
    served = {"base_url": proxy.url, "tokenizer": "org/served-tokenizer"}
    assert EvalConfig(chat=True, backend="endpoint", endpoint=served).display_name == "org/served-tokenizer"
    questions = {
        item["id"]: item["question"] for item in json.loads((benchmarks_dir / "medqa.json").read_text())
    }
    first = [b for b in proxy.bodies if b["max_tokens"] == 8]
    expected = {OFFICIAL_BASE_TEMPLATE.format(question=q) for q in questions.values()}
    assert first and all(b["prompt"] in expected for b in first)
    assert len({b["prompt"] for b in first}) == 3
    assert all(b["top_k"] == 20 and b["top_p"] == 0.95 and b["temperature"] == 0.6 for b in first)
    assert first[0]["n"] == 2 and all(isinstance(b["seed"], int) for b in first)
    # The official recovery pass: the raw text continued, greedy, 2 tokens for SmolLM2, logit_bias ids.
    recovery = [b for b in proxy.bodies if b["max_tokens"] == 2]
    details = pd.read_parquet(tmp_path / "ev" / "details" / "medqa.parquet")
    unparsed = details[details["recovered"]]
    assert len(unparsed) > 0
    continued = {
        OFFICIAL_BASE_TEMPLATE.format(question=questions[row.id])
        + row.generation.strip()
        + ("" if row.generation.strip().endswith(".") else ".")
        + "\nRespond with one option only.\nThe answer is "
        for row in unparsed.itertuples()
    }
    # Once per distinct prompt: two samples with the same text share their (greedy) answer.
    assert sorted(b["prompt"] for b in recovery) == sorted(continued)
    assert all(b["temperature"] == 0.0 and b["logit_bias"] and "top_p" not in b for b in recovery)
    assert results["benchmarks"]["medqa"]["samples"] == 2


@pytest.mark.parametrize(
    ("constraint", "field", "letters_value", "regex_value"),
    [
        ("vllm", "structured_outputs", {"choice": ["A", "B"]}, {"regex": "Question: .+"}),
        ("gbnf", "grammar", 'root ::= " "? ("A" | "B")', None),
    ],
)
@pytest.mark.parametrize("route", ["chat", "completions"])
def test_constraint_dialects_in_request_bodies(
    proxy, embedded_dir, route, constraint, field, letters_value, regex_value
):
    """Each server's current dialect, as the proxy receives it: vLLM `structured_outputs` (>= 0.12),
    llama.cpp `grammar` (GBNF), on both OpenAI routes; TGI's regex `grammar` is checked in
    test_tgi_native_route."""
    backend = EndpointBackend(proxy.url, route=route, constraint=constraint, tokenizer=str(embedded_dir))
    prompt = [{"role": "user", "content": "Which is a fruit?\nA. Apple\nB. Car\nThe answer is"}]
    backend.generate(
        [prompt], SamplingParams(max_tokens=1, temperature=0, allowed_tokens=("A", "B")), progress=False
    )
    assert proxy.bodies[-1][field] == letters_value and "logit_bias" not in proxy.bodies[-1]
    assert not any(k.startswith("guided_") for b in proxy.bodies for k in b)
    if regex_value is not None:
        params = SamplingParams(max_tokens=2, regex="Question: .+", grammar='root ::= "Question: " [a-z]+')
        backend.generate([prompt], params, progress=False)
        assert proxy.bodies[-1][field] == regex_value


@pytest.mark.slow
def test_several_servers_share_the_load_and_survive_one_killed_mid_run(
    fresh_llama_server, gguf_path, tmp_path
):
    """Two llama.cpp servers behind recording proxies; the second is killed once two prompts are done. The
    run completes on the first: every prompt once, the same text a single server gives (greedy)."""
    from tests.support.servers import LlamaServer

    second = LlamaServer(gguf_path, tmp_path)
    proxies = [FaultProxy(fresh_llama_server.url), FaultProxy(second.url)]
    prompts = [
        [{"role": "user", "content": f"Name organ number {i} of the body. One word."}] for i in range(10)
    ]
    params = SamplingParams(n=1, max_tokens=12, temperature=0)
    finished: list[int] = []

    def on_complete(i, completion):
        finished.append(i)
        if len(finished) == 2:
            second.stop()  # SIGKILL mid-run: its in-flight and later requests fail at the proxy

    try:
        backend = EndpointBackend([p.url for p in proxies], max_concurrency=4, **FAST)
        out = backend.generate(prompts, params, on_complete=on_complete, progress=False)
        assert sorted(finished) == list(range(10))  # every prompt finished exactly once
        assert all(proxy.requests > 0 for proxy in proxies)  # both servers took requests
        assert backend.servers[1].set_aside and not backend.servers[0].set_aside
        alone = EndpointBackend(proxies[0].url).generate(prompts, params, progress=False)
        assert [c.texts for c in out] == [c.texts for c in alone]  # nothing lost, nothing changed
        with pytest.raises(ValueError, match="base_url"):
            EndpointBackend([])
    finally:
        for proxy in proxies:
            proxy.close()
        second.stop()


def test_chat_route_reaches_its_server_with_hf_hub_offline(llama_server, monkeypatch):
    """HF_HUB_OFFLINE keeps the Hub off, not the inference server the config names."""
    import asyncio

    from huggingface_hub import AsyncInferenceClient, HfApi, constants
    from huggingface_hub.errors import OfflineModeIsEnabled

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    (out,) = EndpointBackend(llama_server.url).generate(
        QUESTIONS[:1], SamplingParams(n=1, max_tokens=8, seed=1), progress=False
    )
    assert out.samples[0].text
    with pytest.raises(OfflineModeIsEnabled):  # the Hub stays off
        HfApi().model_info("HuggingFaceTB/SmolLM2-135M-Instruct")
    with pytest.raises(OfflineModeIsEnabled):  # and so does a server no config named
        asyncio.run(AsyncInferenceClient(base_url="http://127.0.0.2:9").chat_completion(QUESTIONS[0]))
