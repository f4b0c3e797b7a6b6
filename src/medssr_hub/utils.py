"""Small shared helpers: atomic writes (a crash never leaves a half-written file) and logging setup."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from datasets import Dataset, Features

from medssr_hub.errors import InputError
from medssr_hub.schema import project

try:  # huggingface_hub 2.x ships its HTTP stack as httpx2, 1.x uses httpx: its client and network errors
    from httpx2 import AsyncClient as HTTPClient
    from httpx2 import Timeout, TransportError
except ImportError:  # pragma: no cover - depends on the installed huggingface_hub
    from httpx import AsyncClient as HTTPClient
    from httpx import Timeout, TransportError

__all__ = [
    "describe_error",
    "HTTPClient",
    "Timeout",
    "TransportError",
    "atomic_write_json",
    "atomic_write_jsonl",
    "atomic_write_parquet",
    "atomic_write_text",
    "read_jsonl",
    "setup_logging",
]


def describe_error(error: BaseException) -> str:
    """One line for logs and error messages: type, HTTP status if any, first line of the message.

    Built from the error alone, never from request headers, so a token cannot leak through it.
    """
    status = getattr(getattr(error, "response", None), "status_code", None)
    first = str(error).splitlines()[0] if str(error) else ""
    return f"{type(error).__name__}{f' (HTTP {status})' if status else ''}: {first}"[:300]


def positive_env(name: str, default: float, convert: type = float, unit: str = "units") -> Any:
    """A positive, finite number from the environment variable `name` (`default` when unset), read with
    `convert` (float or int); anything else is an `InputError` naming the variable."""
    value = os.environ.get(name, str(default))
    try:
        number = convert(value)
    except ValueError:
        number = 0
    if not 0 < number < float("inf"):
        raise InputError(f"{name} must be a positive number of {unit}, got {value!r}")
    return number


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write to a temporary file in the same folder, fsync, then rename over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=True) + "\n")


def atomic_write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> Path:
    return atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def atomic_write_parquet(
    path: str | Path, rows: list[dict[str, Any]], features: Features | None = None
) -> Path:
    """Rows as a parquet file, renamed into place. With `features` (a stage's schema) the file holds
    exactly its columns and types, which `datasets.load_dataset` reads back as they are."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    if features is not None:
        Dataset.from_list(project(rows, features), features=features).to_parquet(partial)
    else:
        Dataset.from_list(rows).to_parquet(partial)
    os.replace(partial, path)
    return path


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def setup_logging(level: str | int = "INFO") -> None:
    """Our INFO lines and each stage's one progress bar; libraries' chatter only with level DEBUG.

    Below DEBUG, the libraries' own progress bars are off (datasets' "Creating parquet" bar for every
    small file written, transformers' weight loading and shard writing, huggingface_hub's transfers), and
    so is vLLM's INFO logging, in its engine processes too (VLLM_LOGGING_LEVEL, unless set). The training
    bar is TRL's, and stays.
    """
    level = level.upper() if isinstance(level, str) else logging.getLevelName(level)
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    if level == "DEBUG":
        return
    for noisy in ("httpx", "httpx2", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    import datasets
    import huggingface_hub.utils
    import transformers.utils.logging

    datasets.disable_progress_bars()
    huggingface_hub.utils.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()


def hash_file(path: str | Path, h=None):
    """`h` (a new sha256 if none) updated with the file's bytes, read in 1 MiB blocks; returns `h`."""
    h = hashlib.sha256() if h is None else h
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h
