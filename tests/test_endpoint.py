"""The endpoint backend against a real llama.cpp server on 127.0.0.1 (and a fault-injecting proxy)."""

import contextlib
import logging
import threading

import pytest

from medssr_hub.generation import GenerationError, SamplingParams
from medssr_hub.generation.endpoint import EndpointBackend
from tests.fault_proxy import FaultProxy

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
