"""All Hub I/O goes through this package (reading datasets now; publishing arrives with its issue)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

logger = logging.getLogger(__name__)


def load_hub_dataset(
    repo_id: str, revision: str | None = None, split: str | None = None
) -> Iterator[dict[str, Any]]:
    """Rows of a Hub dataset pinned to `revision` (HF_ENDPOINT and the token are honoured by `datasets`).

    Without `split`, the `test` split is read if present, else `train`, else the only split.
    """
    from datasets import load_dataset

    try:
        dsd = load_dataset(repo_id, revision=revision)
    except Exception as e:  # datasets raises many types (offline, 404, auth); keep the cause, say what to do
        raise FileNotFoundError(
            f"could not load Hub dataset {repo_id!r} (revision {revision or 'main'}): {e}. "
            "Offline? Pass a local file or folder instead, or set HF_ENDPOINT to a reachable hub."
        ) from e
    if split is None:
        split = next((s for s in ("test", "train") if s in dsd), None) or next(iter(dsd))
    if split not in dsd:
        raise KeyError(f"{repo_id} has no split {split!r}; it has {sorted(dsd)}")
    logger.info("Reading %s@%s split %s (%d rows)", repo_id, revision or "main", split, len(dsd[split]))
    yield from dsd[split]
