"""Synthesis through the endpoint backend vs. a raw concurrent load generator, same llama.cpp server, same run.

Both send the same chat requests (the synthesizer's own prompts for one chunk of attempts) with the same
sampling settings and concurrency; the ratio of completion tokens/s says what the synthesizer's own work
(prompt building, retrieval, retries, parsing, validation, the answer pass) costs. Target: >= 0.9.

    .venv/bin/python bench/synthesis_endpoint.py [--attempts 16] [--concurrency 2] [--max-tokens 160]
"""

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from medssr_hub.modeling import find_embedded_gguf  # noqa: E402
from medssr_hub.synthesis.prompts import LAYOUT_GBNF  # noqa: E402
from medssr_hub.synthesis.synthesize import SynthesisConfig, Synthesizer  # noqa: E402
from tests.conftest import LlamaServer  # noqa: E402  (the same server the tests start)


async def raw_load(url: str, prompts, max_tokens: int, concurrency: int, seeds, grammar=None) -> int:
    semaphore = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(timeout=600) as client:

        async def one(messages, seed):
            async with semaphore:
                r = await client.post(
                    f"{url}/v1/chat/completions",
                    json={
                        "messages": messages,
                        "max_tokens": max_tokens,
                        "temperature": 0.8,
                        "top_p": 0.95,
                        "top_k": 50,
                        "seed": seed,
                        **({"grammar": grammar} if grammar else {}),
                    },
                )
                r.raise_for_status()
                return r.json()["usage"]["completion_tokens"]

        return sum(await asyncio.gather(*(one(p, s) for p, s in zip(prompts, seeds, strict=True))))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--attempts", type=int, default=16)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=160)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = LlamaServer(find_embedded_gguf(), Path(tmp))
        try:
            results = {}
            runs = (
                ("synthesizer", True, "none"),
                ("synthesizer, no answer pass", False, "none"),
                # The layout as a llama.cpp grammar: every question comes with its answer line.
                ("synthesizer, gbnf layout", True, "gbnf"),
            )
            for name, recover, constraint in runs:
                cfg = SynthesisConfig(
                    num_questions=4,
                    alpha=0.0,
                    seed_generator="llm",
                    backend="endpoint",
                    endpoint={
                        "base_url": server.url,
                        "max_concurrency": args.concurrency,
                        "tokenizer": "embedded",
                        "constraint": constraint,
                    },
                    max_tokens=args.max_tokens,
                    chunk_size=args.attempts,
                    recover_answers=recover,
                    output_dir=str(Path(tmp) / name.replace(" ", "_")),
                )
                synth = Synthesizer(cfg)
                plans = [synth._plan("seed", a) for a in range(args.attempts)]
                synth.decontaminator  # noqa: B018  (built once per run in real use, outside the timing)
                start = time.perf_counter()
                rows = synth._run_chunk("seed", 0)
                seconds = time.perf_counter() - start
                accepted = sum(r["status"] == "ok" for r in rows)
                results[name] = (
                    synth.backend.stats.completion_tokens,
                    seconds,
                    f"{accepted}/{len(rows)} accepted",
                )
            for name, grammar in (("raw load", None), ("raw load, gbnf layout", LAYOUT_GBNF)):
                start = time.perf_counter()
                raw_tokens = asyncio.run(
                    raw_load(
                        server.url,
                        [p["prompt"] for p in plans],
                        args.max_tokens,
                        args.concurrency,
                        [p["sample_seed"] for p in plans],
                        grammar=grammar,
                    )
                )
                results[name] = (raw_tokens, time.perf_counter() - start, "")
        finally:
            server.stop()
    for name, (tokens, seconds, note) in results.items():
        raw = results["raw load, gbnf layout" if "gbnf" in name else "raw load"]
        raw_tps = raw[0] / raw[1]
        tps = tokens / seconds
        print(
            f"{name:28s}: {tokens} tokens in {seconds:.1f}s = {tps:.1f} tok/s  ratio {tps / raw_tps:.2f}  {note}"
        )
    print("target: synthesizer / raw >= 0.9 (gbnf rows against the raw load with the same grammar)")


if __name__ == "__main__":
    main()
