"""Synthesis through the endpoint backend vs. a raw concurrent load generator, same llama.cpp server, same run.

Both send the same chat requests (the synthesizer's own prompts and seeds for one chunk of attempts) with the
same sampling settings and concurrency; the ratio of completion tokens/s says what the synthesizer's own work
(prompt building, retrieval, retries, parsing, validation, the answer pass) costs. Target: >= 0.9.

    .venv/bin/python bench/synthesis_endpoint.py [--attempts 16] [--concurrency 1] [--max-tokens 160]
                                                 [--repeats 2]

The test server (llama-cpp-python) has one slot: it runs one request at a time, so concurrency 1 matches it,
as `max_concurrency` should match the slots of any server. A question's answer pass then follows its own
generation and finds its prefix still evaluated. `--concurrency 2` queues a second request on the server:
no faster raw load, and the answer pass lands after another prompt and pays its whole prefill again.
"""

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from medssr_hub.generation.base import sample_seed  # noqa: E402
from medssr_hub.modeling import find_embedded_gguf  # noqa: E402
from medssr_hub.synthesis.config import SynthesisConfig  # noqa: E402
from medssr_hub.synthesis.prompts import LAYOUT_GBNF  # noqa: E402
from medssr_hub.synthesis.synthesize import Synthesizer  # noqa: E402
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


def synthesizer_chunk(url: str, args, recover: bool, constraint: str, out: Path):
    """(completion tokens, seconds, accepted, plans) for one chunk of attempts through the synthesizer."""
    cfg = SynthesisConfig(
        num_questions=4,
        alpha=0.0,
        seed_generator="llm",
        backend="endpoint",
        endpoint={
            "base_url": url,
            "max_concurrency": args.concurrency,
            "tokenizer": "embedded",
            "constraint": constraint,
        },
        max_tokens=args.max_tokens,
        chunk_size=args.attempts,
        recover_answers=recover,
        output_dir=str(out),
    )
    synth = Synthesizer(cfg)
    plans = [synth.plan_attempt("seed", a) for a in range(args.attempts)]
    # Built once per run in real use, so outside the timing: the decontamination index, and the tokenizer
    # that maps answer letters to logit_bias ids (about 3 s to load).
    synth.decontaminator  # noqa: B018
    synth.backend.tokenizer  # noqa: B018
    start = time.perf_counter()
    rows = synth.run_chunk("seed", 0)
    seconds = time.perf_counter() - start
    accepted = sum(r["status"] == "ok" for r in rows)
    return synth.backend.stats.completion_tokens, seconds, accepted, plans


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--attempts", type=int, default=16)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--max-tokens", type=int, default=160)
    parser.add_argument("--repeats", type=int, default=2, help="interleaved synthesizer/raw pairs per row")
    args = parser.parse_args()
    rows = (
        ("synthesizer", True, "none"),
        ("synthesizer, no answer pass", False, "none"),
        # The layout as a llama.cpp grammar: every question comes with its answer line.
        ("synthesizer, gbnf layout", True, "gbnf"),
    )
    ratios: dict[str, list[float]] = {name: [] for name, _, _ in rows}
    with tempfile.TemporaryDirectory() as tmp:
        server = LlamaServer(find_embedded_gguf(), Path(tmp))
        try:
            # One untimed request first, so that no row pays the fresh server's page faults.
            asyncio.run(raw_load(server.url, [[{"role": "user", "content": "Hello"}]], 8, 1, [0]))
            # Each synthesizer run is followed at once by the raw load of the same requests, so that the
            # machine's drift hits both sides of a pair alike; the median pair is reported.
            for repeat in range(args.repeats):
                for name, recover, constraint in rows:
                    out = Path(tmp) / f"{repeat}-{name.replace(' ', '_')}"
                    tokens, seconds, accepted, plans = synthesizer_chunk(
                        server.url, args, recover, constraint, out
                    )
                    start = time.perf_counter()
                    raw_tokens = asyncio.run(
                        raw_load(
                            server.url,
                            [p.prompt for p in plans],
                            args.max_tokens,
                            args.concurrency,
                            # the seed the backend sends for sample 0 of each prompt: identical requests
                            [sample_seed(p.sample_seed, 0) % 2**31 for p in plans],
                            grammar=LAYOUT_GBNF if constraint == "gbnf" else None,
                        )
                    )
                    raw_seconds = time.perf_counter() - start
                    ratio = (tokens / seconds) / (raw_tokens / raw_seconds)
                    ratios[name].append(ratio)
                    print(
                        f"{name:28s}: {tokens} tokens in {seconds:.1f}s = {tokens / seconds:.1f} tok/s; "
                        f"raw {raw_tokens} in {raw_seconds:.1f}s = {raw_tokens / raw_seconds:.1f} tok/s; "
                        f"ratio {ratio:.2f}; {accepted}/{len(plans)} accepted",
                        flush=True,
                    )
        finally:
            server.stop()
    print(f"concurrency {args.concurrency}, {args.attempts} attempts, {args.repeats} pair(s) per row:")
    for name, values in ratios.items():
        print(
            f"  {name:28s}: median ratio {statistics.median(values):.2f}  ({', '.join(f'{v:.2f}' for v in values)})"
        )
    print("target: synthesizer / raw >= 0.9 (gbnf rows against the raw load with the same grammar)")


if __name__ == "__main__":
    main()
