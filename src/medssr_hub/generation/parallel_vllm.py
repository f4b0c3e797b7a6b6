"""Data-parallel vLLM: one offline engine per GPU, each generating a share of the prompts.

An 8B model fits one GPU, and generating the paper's test sets is throughput-bound: eight one-GPU engines do
the work of one tensor-parallel-8 engine without its per-layer all-reduces. vLLM 0.30 runs data parallelism
inside one engine only for MoE models: for a dense model `data_parallel_size > 1` is refused
(vllm-project/vllm#30739; TRL's `vllm-serve` help says so too), so the engines are independent processes
here, as vLLM's own offline data-parallel example runs them.

Configured as `vllm: {engines: 8}` (not a vLLM argument: taken out before the rest reaches `vllm.LLM`).
Each prompt keeps its own seed, so the samples are the ones a single engine draws: two engines give what
one gives (tested on CPU, where each engine gets its share of the cores instead of a GPU).
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing as mp
import os
import queue
from collections.abc import Sequence
from typing import Any

from tqdm.auto import tqdm

from medssr_hub.errors import ConfigError
from medssr_hub.generation.base import (
    BackendStats,
    Capabilities,
    Completion,
    GenerationBackend,
    GenerationError,
    OnComplete,
    Prompt,
    SamplingParams,
    prompt_seeds,
)
from medssr_hub.resolve import model_identity, resolve_model

logger = logging.getLogger(__name__)

ENGINES = "engines"  # the key in the config's `vllm:` dict
START_TIMEOUT_S = 1800  # an 8B engine loads and profiles in minutes; a worker that exits is noticed at once
POLL_S = 5


def split_engines(options: dict[str, Any] | None) -> tuple[int, dict[str, Any]]:
    """(how many engines, the `vllm.LLM` arguments without our key)."""
    options = dict(options or {})
    engines = options.pop(ENGINES, 1)
    if not isinstance(engines, int) or isinstance(engines, bool) or engines < 1:
        raise ConfigError(f"vllm.engines must be a whole number >= 1, got {engines!r}")
    if engines > 1 and int(options.get("tensor_parallel_size", 1)) > 1:
        raise ConfigError(
            "vllm.engines > 1 runs one engine per GPU: set tensor_parallel_size 1 (or leave it out)"
        )
    return engines, options


def _devices(engines: int) -> list[dict[str, str]]:
    """Each engine's environment: its GPU, or on CPU its share of this process's cores (vLLM's CPU engine
    binds its threads to VLLM_CPU_OMP_THREADS_BIND; two engines on the same cores would fight for them)."""
    import torch

    if torch.cuda.is_available():
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        gpus = visible.split(",") if visible else [str(i) for i in range(torch.cuda.device_count())]
        if engines > len(gpus):
            raise ConfigError(
                f"vllm.engines is {engines}, but {len(gpus)} GPU(s) are visible: one engine a GPU"
            )
        return [{"CUDA_VISIBLE_DEVICES": gpus[i]} for i in range(engines)]
    cores = sorted(os.sched_getaffinity(0))
    if engines > len(cores):
        raise ConfigError(f"vllm.engines is {engines}, but this process has {len(cores)} core(s)")
    shares = [cores[i::engines] for i in range(engines)]
    return [{"VLLM_CPU_OMP_THREADS_BIND": ",".join(map(str, share))} for share in shares]


def _serve(rank: int, env: dict[str, str], build: dict[str, Any], requests, results) -> None:
    """One engine's process: build the engine on its device, then generate each share it is sent."""
    os.environ.update(env)
    from medssr_hub.generation.offline_vllm import VLLMBackend

    try:
        backend = VLLMBackend(**build)
    except Exception as e:  # reported to the parent, which stops the others
        results.put(("error", rank, f"{type(e).__name__}: {e}"))
        return
    results.put(("ready", rank, backend.max_model_len))
    try:
        while (job := requests.get()) is not None:
            prompts, params, seeds, indices = job

            def done(i: int, completion: Completion, indices=indices) -> None:
                results.put(("done", indices[i], completion))

            try:
                backend.generate(prompts, params, seeds=seeds, on_complete=done, progress=False)
                results.put(("end", rank, None))
            except Exception as e:
                results.put(("error", rank, f"{type(e).__name__}: {e}"))
    finally:
        backend.close()


class DataParallelVLLM:
    """`engines` offline vLLM engines, one per GPU (or per share of the CPU cores), in child processes.
    Prompt i goes to engine i mod `engines`; completions come back as each engine finishes them."""

    name = "vllm"
    capabilities = Capabilities()

    def __init__(
        self,
        engines: int,
        model: str | None = None,
        revision: str | None = None,
        hub: str | None = None,
        batch_size: int = 64,
        engine: dict[str, Any] | None = None,
    ):
        from transformers import AutoTokenizer

        # Resolved once here (a hub model is pulled once), then every engine loads the same folder.
        path, revision = resolve_model(model, revision, hub)
        self.tokenizer = AutoTokenizer.from_pretrained(path, revision=revision)
        self._identity = model_identity(path, revision)  # as one engine's: logs resume across engine counts
        self.batch_size = max(1, batch_size)
        self.stats = BackendStats()
        self.model_type: str | None = None
        self.max_model_len: int | None = None  # the engines' (one config: the same for each)
        context = mp.get_context("spawn")  # vLLM and CUDA do not survive fork
        self.results = context.Queue()
        self.requests = [context.Queue() for _ in range(engines)]
        build = {"model": path, "revision": revision, "batch_size": batch_size, "engine": engine}
        # Not daemonic: each engine starts vLLM's engine-core process, which a daemonic process may not.
        # They are stopped by close(), and at this process's exit if nobody closed them.
        self.procs = [
            context.Process(target=_serve, args=(rank, env, build, self.requests[rank], self.results))
            for rank, env in enumerate(_devices(engines))
        ]
        atexit.register(self.close)
        logger.info("Starting %d data-parallel vLLM engines on %s", engines, path)
        for proc in self.procs:
            proc.start()
        ready = 0
        while ready < engines:
            kind, rank, detail = self._next(START_TIMEOUT_S, "start")
            if kind == "error":
                self.close()
                raise GenerationError(f"vLLM engine {rank} failed to start: {detail}")
            if kind == "ready":
                ready += 1
                self.max_model_len = detail
        from transformers import AutoConfig

        self.model_type = getattr(AutoConfig.from_pretrained(path, revision=revision), "model_type", None)

    def _next(self, timeout_s: float, what: str):
        """The next message from any engine; an engine process that died is an error, not a wait."""
        waited = 0.0
        while True:
            try:
                return self.results.get(timeout=POLL_S)
            except queue.Empty:
                waited += POLL_S
                dead = [r for r, p in enumerate(self.procs) if not p.is_alive()]
                if dead or waited >= timeout_s:
                    self.close()
                    reason = f"engine(s) {dead} exited" if dead else f"no answer in {timeout_s:.0f} s"
                    raise GenerationError(f"data-parallel vLLM ({what}): {reason}") from None

    def identity(self) -> str:
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
        seeds = prompt_seeds(params, len(prompts), seeds)
        results: list[Completion | None] = [None] * len(prompts)
        busy = 0
        for rank, requests in enumerate(self.requests):
            share = list(range(rank, len(prompts), len(self.requests)))
            if share:
                requests.put(([prompts[i] for i in share], params, [seeds[i] for i in share], share))
                busy += 1
        desc = f"generate (vllm x{len(self.requests)})"
        bar = tqdm(total=len(prompts) * params.n, desc=desc, unit="sample", disable=not progress)
        while busy:
            kind, key, detail = self._next(24 * 3600, "generate")
            if kind == "error":
                bar.close()
                finished = {i: c for i, c in enumerate(results) if c is not None}
                raise GenerationError(f"vLLM engine {key}: {detail}", partial=finished)
            if kind == "end":
                busy -= 1
                continue
            results[key] = detail
            self.stats.count(detail.samples)
            bar.update(len(detail.samples))
            if on_complete is not None:
                on_complete(key, detail)
        bar.close()
        self.stats.prompts += len(prompts)
        return results  # type: ignore[return-value]

    def close(self) -> None:
        """Stop every engine (each frees its device) and its process."""
        for requests, proc in zip(self.requests, self.procs, strict=True):
            if proc.is_alive():
                requests.put(None)
        for proc in self.procs:
            proc.join(timeout=60)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=10)
        self.procs, self.requests = [], []
        atexit.unregister(self.close)


def from_settings(*, model, revision, hub, batch_size, options, **_) -> GenerationBackend:
    """The builder's entry (`generation.builder.BACKENDS`): the config's `vllm:` options are `vllm.LLM`'s
    arguments, plus `engines: N` for one engine per GPU (the weights' dtype is `vllm.dtype`)."""
    from medssr_hub.generation.offline_vllm import VLLMBackend

    engines, engine = split_engines(options)
    if engines > 1:
        return DataParallelVLLM(
            engines, model=model, revision=revision, hub=hub, batch_size=batch_size, engine=engine
        )
    return VLLMBackend(model=model, revision=revision, hub=hub, batch_size=batch_size, engine=engine)
