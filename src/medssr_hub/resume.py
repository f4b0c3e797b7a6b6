"""Resuming a stage's work: what a resumed run must match (its fingerprint), the guard that refuses a
folder written with other settings, and the append-only log of finished items a resumed run skips.
Every stage's resume goes through here."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medssr_hub.errors import ConfigError
from medssr_hub.utils import atomic_write_json, atomic_write_jsonl, hash_file


def config_dict(config: Any) -> dict[str, Any]:
    """A config (a dataclass or a mapping) as plain data (JSON round trip: tuples and JsonDicts become
    lists and dicts)."""
    values = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)
    return json.loads(json.dumps(values, default=str))


def content_hash(value: Any) -> str:
    """A short sha256 of a JSON-able value (a prompt, the model that answers it): what resumed work is
    matched on, so that finished work is reused only for the same input and the same model."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def endpoint_fingerprint(endpoint: dict[str, Any] | None) -> dict[str, Any]:
    """What a resume check keeps of an endpoint config: which servers, which model, which route (an empty
    dict on the embedded backend, so its fingerprint is unchanged)."""
    server = {k: endpoint[k] for k in ("base_url", "model", "route") if endpoint and k in endpoint}
    return {"endpoint": server} if server else {}


def engine_fingerprint(engine: dict[str, Any] | None) -> dict[str, Any]:
    """What a resume check keeps of a `vllm:` engine config: what changes the numbers (the weights' dtype
    and quantization), not where they run (memory, parallelism); empty when unset."""
    kept = {k: engine[k] for k in ("dtype", "quantization") if engine and k in engine}
    return {"vllm": kept} if kept else {}


def resume_fingerprint(
    config: Any,
    *,
    keep: Sequence[str] | None = None,
    skip: Sequence[str] = (),
    inputs: Sequence[str | None] | None = None,
    data: Any = None,
) -> dict[str, Any]:
    """What a resumed run of a stage must match, in one shape for every stage: its settings (the fields in
    `keep`, or every field but those in `skip`, of a config dataclass or mapping), the endpoint it
    generated with (servers, served model, route), what changes the vLLM engine's numbers, the content of
    its local input files (`inputs`) and of rows already loaded (`data`: a training set read by name from
    the Hub). Work items are matched one by one as well (each stage hashes an item's prompt and model)."""
    values = config_dict(config)
    names = keep if keep is not None else [k for k in values if k not in set(skip)]
    out = {k: values[k] for k in names}
    if keep is not None:  # a kept-fields fingerprint names the endpoint by what identifies it
        out |= endpoint_fingerprint(getattr(config, "endpoint", None))
    out |= engine_fingerprint(getattr(config, "vllm", None))
    if inputs is not None:
        out["inputs"] = local_inputs_fingerprint(inputs)
    if data is not None:
        out["data"] = content_hash(data)
    return out


def guard_resume(
    output_dir: str | Path,
    fingerprint: dict[str, Any],
    what: str,
    error: type[Exception] = ConfigError,
    *,
    resuming: bool = True,
    record: bool = True,
    file: str = "run.json",
    fix: str = "use another output folder or delete it",
) -> None:
    """Every stage's resume check: refuse to resume into a folder written with other settings (naming the
    settings that changed, and `fix`); record this run's settings.

    `resuming`: whether this run reuses the folder's work (a training run only when it resumes a
    checkpoint: a fresh start overwrites the record). `record`: whether this process writes it (under
    accelerate, the main process only). `error`: what a mismatch raises."""
    run_file = Path(output_dir) / file
    fingerprint = json.loads(json.dumps(fingerprint, default=str))
    if resuming and run_file.exists():
        previous = json.loads(run_file.read_text())
        if previous != fingerprint:
            changed = sorted(
                k for k in set(previous) | set(fingerprint) if previous.get(k) != fingerprint.get(k)
            )
            raise error(
                f"{output_dir} holds a run of {what} with other settings ({', '.join(changed)}); {fix}"
            )
    if record:
        atomic_write_json(run_file, fingerprint)


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
