"""One place that turns a name in a config into something to load, for every stage.

A model is `embedded` (the converted SmolLM2 folder), a folder, or a repo id pinned to a revision; a
dataset is a file, a folder, or a repo id pinned to a revision. A repo id is read from the hub the config
names; without one, from the local hub when it holds the repo (what earlier stages published), else from
the Hub at HF_ENDPOINT.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from medssr_hub.hub import RUN_CONFIG, HubError, LocalHub, open_hub
from medssr_hub.modeling import EMBEDDED, ensure_embedded_model

REPO_ID = re.compile(r"[\w.-]+/[\w.-]+")


def _looks_like_path(name: str) -> bool:
    return name.startswith(("/", ".", "~")) or name.endswith((".json", ".jsonl", ".parquet", ".yaml"))


def is_repo_id(name: str) -> bool:
    return bool(REPO_ID.fullmatch(name)) and not _looks_like_path(name)


def _local_first(name: str, repo_type: str, hub: str | None):
    """The hub to read a repo id from, or None: the Hub at HF_ENDPOINT through the library's own cache."""
    target = open_hub(hub)
    if hub is not None or (isinstance(target, LocalHub) and target.exists(name, repo_type)):
        return target
    return None


def resolve_model(
    name: str | None, revision: str | None = None, hub: str | None = None
) -> tuple[str, str | None]:
    """(folder or Hub id, revision for transformers) of a model named in a config.

    A repo id that a hub we manage holds is pulled at `revision` into a folder (the revision is then
    spent); any other repo id is left to transformers, which reads it from HF_ENDPOINT at `revision`.
    """
    if name in (None, "", EMBEDDED):
        return str(ensure_embedded_model()), None
    path = Path(name).expanduser()
    if path.is_dir():
        return str(path), None
    if not is_repo_id(name):
        raise FileNotFoundError(
            f"model {name!r}: no such folder, and not a model repo id (ORG/NAME) or 'embedded'"
        )
    target = _local_first(name, "model", hub)
    if target is not None:
        return str(target.pull(name, revision or "main", repo_type="model")), None
    return name, revision


def published_chat(name: str | None, revision: str | None = None, hub: str | None = None) -> bool | None:
    """Whether a model we trained was trained on the chat template: `chat` in the run config its release
    carries (RUN_CONFIG), read from a local folder or the local hub, never over the network. None when it
    is not a model of ours, or says nothing."""
    if name in (None, "", EMBEDDED):
        return None
    text = None
    path = Path(name).expanduser()
    if path.is_dir():
        text = (path / RUN_CONFIG).read_text() if (path / RUN_CONFIG).is_file() else None
    elif is_repo_id(name):
        target = open_hub(hub) if hub is None or not str(hub).startswith(("http://", "https://")) else None
        if isinstance(target, LocalHub) and target.exists(name, "model"):
            try:
                text = target.read_text(name, revision or "main", RUN_CONFIG, "model")
            except HubError:
                text = None
    try:
        config = json.loads(text) if text else {}
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    for section in config.values() if isinstance(config, dict) else ():
        if isinstance(section, dict) and isinstance(section.get("chat"), bool):
            return section["chat"]
    return None


def model_identity(path: str, revision: str | None) -> str:
    """What a loaded model is, for resuming: a local folder by its real path (a link to the folder is the
    same model), a repo id with the revision read."""
    name = str(Path(path).resolve()) if Path(path).is_dir() else path
    return f"{name}@{revision}" if revision else name


def resolve_dataset(source: str | Path, revision: str | None = None, hub: str | None = None) -> Path:
    """A local file or folder holding the dataset: the path itself, or the repo's files at `revision`."""
    name = str(source)
    path = Path(name).expanduser()
    if path.exists():
        return path
    if not is_repo_id(name):
        raise FileNotFoundError(f"{name}: no such file or folder, and not a dataset repo id (ORG/NAME)")
    local = _local_first(name, "dataset", hub)
    if local is not None:
        return local.pull(name, revision or "main", repo_type="dataset")
    try:
        return open_hub("hf").pull(name, revision or "main", repo_type="dataset")
    except HubError as e:  # say where it looked first, and what is there
        raise HubError(f"{e}; {local_hub_holdings(name, hub)}") from e


def local_hub_holdings(name: str, hub: str | None) -> str:
    """One sentence on what the local hub holds, for an error about `name` it does not hold."""
    target = open_hub(hub)
    if not isinstance(target, LocalHub):
        return f"{hub} was the only hub asked"
    folder = target.root / "datasets"
    held = sorted(f"{p.parent.name}/{p.name}" for p in folder.glob("*/*") if (p / "refs.json").is_file())
    listed = ", ".join(f"{r} ({', '.join(sorted(target.versions(r)) or ['main'])})" for r in held[:10])
    more = f" and {len(held) - 10} more" if len(held) > 10 else ""
    return (
        f"it is not in the local hub at {target.root} either, which holds: {listed}{more}"
        if held
        else f"it is not in the local hub at {target.root} either, which holds no dataset"
    )
