"""Small shared helpers: atomic writes (a crash never leaves a half-written file) and logging setup."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Iterable, Sequence
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


def read_appended(path: str | Path, key: str = "id") -> dict[str, dict[str, Any]]:
    """Rows of an append-only JSONL log (one per finished item), by `key`.

    A torn last line (a crash mid-write) is dropped, and the file rewritten without it, so that the
    item is regenerated and later appends start on a clean line.
    """
    path = Path(path)
    if not path.exists():
        return {}
    finished, torn = {}, False
    with path.open(encoding="utf-8") as f:
        for line in f:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                logging.getLogger(__name__).warning("%s: ignoring a torn line (interrupted write)", path)
                torn = True
                continue
            finished[row[key]] = row
    if torn:
        atomic_write_jsonl(path, finished.values())
    return finished


class AppendLog:
    """Append one JSON row per finished item, flushed and fsynced: a kill loses at most the torn line."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = self.path.open("a", encoding="utf-8")

    def write(self, row: dict[str, Any]) -> None:
        self._f.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


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


def local_inputs_fingerprint(sources: Sequence[str | None]) -> dict[str, str]:
    """The content of each local file or folder among `sources`, as a short hash (a Hub repo id is
    matched by the revision in the config instead): a resume into the same folder after a file changed
    under the same name is then another run."""
    digests = {}
    for source in sources:
        path = Path(source).expanduser() if source else None
        if path is None or not path.exists():
            continue
        h = hashlib.sha256()
        for f in [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()):
            h.update(str(f.relative_to(path)).encode() + b"\0")
            hash_file(f, h)
        digests[str(source)] = h.hexdigest()[:16]
    return digests


def hash_file(path: str | Path, h=None):
    """`h` (a new sha256 if none) updated with the file's bytes, read in 1 MiB blocks; returns `h`."""
    h = hashlib.sha256() if h is None else h
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h
