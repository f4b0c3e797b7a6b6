"""All Hub I/O goes through this package: publishing versioned artefacts and reading them back.

Two targets behind one API (`Hub`): a local hub root, the offline default, and the Hugging Face Hub (or
any server speaking its API). `open_hub(uri)` picks one: nothing or a folder path -> local hub;
`hf` -> the Hub at HF_ENDPOINT (huggingface.co by default); an http(s) URL -> that endpoint.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from medssr_hub.hub.common import MANIFEST, Hub, HubError, PublishResult, VersionExistsError, build_manifest
from medssr_hub.hub.local import LocalHub

logger = logging.getLogger(__name__)
HUB_ROOT_ENV = "MEDSSR_HUB_ROOT"


def default_hub_root() -> Path:
    """$MEDSSR_HUB_ROOT, else the `hub` folder of the medssr-hub cache."""
    if os.environ.get(HUB_ROOT_ENV):
        return Path(os.environ[HUB_ROOT_ENV]).expanduser()
    from medssr_hub.modeling import cache_dir

    return cache_dir() / "hub"


def open_hub(uri: str | Path | None = None, token: str | None = None) -> Hub:
    if uri is None or str(uri) in ("", "local"):
        return LocalHub(default_hub_root())
    uri = str(uri)
    if uri in ("hf", "hub", "huggingface"):
        from medssr_hub.hub.remote import RemoteHub

        return RemoteHub(None, token=token)
    if uri.startswith(("http://", "https://")):
        from medssr_hub.hub.remote import RemoteHub

        return RemoteHub(uri, token=token)
    return LocalHub(uri.removeprefix("file://"))


def publish(
    folder: str | Path,
    repo_id: str,
    version: str | None,
    *,
    card=None,
    repo_type: str = "dataset",
    hub: str | None = None,
    private: bool = False,
    branch: str | None = None,
    message: str | None = None,
    token: str | None = None,
) -> PublishResult:
    """Write the card (checked first) as the folder's README.md, then publish the folder as `version`.

    `version=None` with a branch publishes to that branch without a version tag (training checkpoints).
    """
    if card is not None:
        from medssr_hub.hub.cards import card_problems

        problems = card_problems(card, folder)
        if problems:
            raise ValueError(f"card for {repo_id} is not publishable: {'; '.join(problems)}")
        card.save(Path(folder) / "README.md")
    return open_hub(hub, token=token).publish(
        folder, repo_id, version, repo_type=repo_type, private=private, branch=branch, message=message
    )


def pull_dataset(repo_id: str, revision: str | None = None, hub: str | None = None) -> Path:
    """A dataset repo's files at `revision`. Without `hub`: the local hub if it holds the repo, else the Hub."""
    target = open_hub(hub)
    if hub is None and isinstance(target, LocalHub) and not target.exists(repo_id, "dataset"):
        target = open_hub("hf")
    return target.pull(repo_id, revision or "main", repo_type="dataset")


def resolve_model_source(name: str | None, revision: str | None, hub: str | None) -> tuple[str, str | None]:
    """(path or Hub id, revision to pass to transformers) for a model named in a config.

    `embedded` -> the converted SmolLM2 folder; an existing path -> itself; a repo id -> pulled through
    our hub layer (the explicit `hub`, else the local hub when it holds the repo: stage 1 checkpoints),
    otherwise left to transformers (the Hub at HF_ENDPOINT) with its revision.
    """
    from medssr_hub.modeling import EMBEDDED, resolve_model

    if name in (None, "", EMBEDDED):
        return resolve_model(name), None
    if Path(name).expanduser().exists():
        return str(Path(name).expanduser()), None
    target = open_hub(hub)
    if hub is not None or (isinstance(target, LocalHub) and target.exists(name, "model")):
        return str(target.pull(name, revision or "main", repo_type="model")), None
    return name, revision


def load_hub_dataset(
    repo_id: str, revision: str | None = None, split: str | None = None, hub: str | None = None
) -> Iterator[dict[str, Any]]:
    """Rows of a dataset repo pinned to `revision`, read with `datasets` from the pulled files.

    Without `split`: `test` if present, else `train`, else the only split.
    """
    from datasets import load_dataset

    from medssr_hub.records import split_of

    folder = pull_dataset(repo_id, revision, hub)
    files = sorted(
        p for p in folder.rglob("*") if p.suffix in (".parquet", ".jsonl", ".json") and p.name != MANIFEST
    )
    if not files:
        raise HubError(f"{repo_id}@{revision or 'main'} holds no parquet/json data files")
    builder = "parquet" if files[0].suffix == ".parquet" else "json"
    by_split: dict[str, list[str]] = {}
    for f in files:
        if f.suffix == files[0].suffix:
            by_split.setdefault(split_of(f), []).append(str(f))
    by_split.pop("rejected", None)
    if split is None:
        split = next((s for s in ("test", "train") if s in by_split), None) or next(iter(by_split))
    if split not in by_split:
        raise KeyError(f"{repo_id} has no split {split!r}; it has {sorted(by_split)}")
    # Only the asked split is read: splits may have different columns (a leaderboard's results/details).
    dsd = load_dataset(builder, data_files={split: by_split[split]})
    logger.info("Reading %s@%s split %s (%d rows)", repo_id, revision or "main", split, len(dsd[split]))
    yield from dsd[split]


__all__ = [
    "Hub",
    "HubError",
    "LocalHub",
    "PublishResult",
    "VersionExistsError",
    "build_manifest",
    "default_hub_root",
    "load_hub_dataset",
    "open_hub",
    "publish",
    "pull_dataset",
    "resolve_model_source",
]
