"""Publishing and reading back through one API: which hub a URI names (`open_hub`), whether a run may
publish a version (`check_publishable`, before the work), and the publish itself (card checked, then the
folder as a version)."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from medssr_hub.errors import InputError
from medssr_hub.hub.cards import card_problems
from medssr_hub.hub.common import RUN_CONFIG, Hub, HubError, PublishResult, VersionExistsError
from medssr_hub.hub.local import LocalHub
from medssr_hub.hub.remote import RemoteHub
from medssr_hub.paths import cache_dir
from medssr_hub.utils import atomic_write_json

logger = logging.getLogger(__name__)
HUB_ROOT_ENV = "MEDSSR_HUB_ROOT"


def default_hub_root() -> Path:
    """$MEDSSR_HUB_ROOT, else the `hub` folder of the medssr-hub cache."""
    if os.environ.get(HUB_ROOT_ENV):
        return Path(os.environ[HUB_ROOT_ENV]).expanduser()
    return cache_dir() / "hub"


def open_hub(uri: str | Path | None = None, token: str | None = None) -> Hub:
    if uri is None or str(uri) in ("", "local"):
        return LocalHub(default_hub_root())
    uri = str(uri)
    if uri in ("hf", "hub", "huggingface"):
        return RemoteHub(None, token=token)
    if uri.startswith(("http://", "https://")):
        return RemoteHub(uri, token=token)
    return LocalHub(uri.removeprefix("file://"))


def check_publishable(
    repo_id: str, version: str, config: dict, *, repo_type: str = "dataset", hub: str | None = None
) -> bool:
    """Before any work starts: may a run with these settings publish `repo_id@version`?

    True when that version was published from the same settings (RUN_CONFIG in its release): the run
    reproduces it and its publish is a no-op. A version published from other settings raises
    `VersionExistsError` naming the fix, so the conflict is found before the work, not after it.
    """
    target = open_hub(hub)
    try:
        if version not in target.versions(repo_id, repo_type):
            return False
    except HubError:  # no such repo yet (an unreachable Hub is reported by the publish itself)
        return False
    published = target.read_text(repo_id, version, RUN_CONFIG, repo_type)
    config = json.loads(json.dumps(config, sort_keys=True, default=str))
    try:
        previous = json.loads(published) if published is not None else None
    except json.JSONDecodeError as e:
        raise HubError(f"{repo_type} {repo_id}@{version}: its {RUN_CONFIG} is not valid JSON ({e})") from e
    if previous != config:
        changed = sorted(
            k for k in set(previous or {}) | set(config) if (previous or {}).get(k) != config.get(k)
        )
        why = f"other settings ({', '.join(changed)})" if previous is not None else "an unknown configuration"
        raise VersionExistsError(
            f"{repo_type} {repo_id}@{version} is already published from {why}; versions are immutable: set "
            "publish_version to a new version (or publish_repo to another repo)"
        )
    return True


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
        problems = card_problems(card, folder)
        if problems:
            raise InputError(f"card for {repo_id} is not publishable: {'; '.join(problems)}")
        card.save(Path(folder) / "README.md")
    return open_hub(hub, token=token).publish(
        folder, repo_id, version, repo_type=repo_type, private=private, branch=branch, message=message
    )


@dataclass(frozen=True)
class StageRelease:
    """One stage's publish, both ends: `check()` before the work (a version published from other settings
    stops the run then, not after it), `publish()` after it (the run config written beside the data, the
    card checked, the folder published). Every stage's release goes through it, with the same config."""

    repo_id: str | None
    version: str
    config: dict
    hub: str | None = None
    repo_type: str = "dataset"

    @classmethod
    def of(cls, cfg, repo_type: str = "dataset", settings=None) -> StageRelease:
        """A stage config's release: its `publish_repo`, `publish_version`, `hub` and publishable settings
        (`settings`, where the release records more than `cfg`: the ablation's run settings and rows)."""
        from medssr_hub.published import published_config

        recorded = published_config(cfg if settings is None else settings)
        return cls(cfg.publish_repo, cfg.publish_version, recorded, cfg.hub, repo_type)

    def check(self) -> bool:
        """True when this version exists from the same settings (the publish will be a no-op)."""
        if not self.repo_id:
            return False
        return check_publishable(
            self.repo_id, self.version, self.config, repo_type=self.repo_type, hub=self.hub
        )

    def publish(self, folder: str | Path, card) -> PublishResult:
        atomic_write_json(Path(folder) / RUN_CONFIG, self.config)  # what check() compares against
        return publish(folder, self.repo_id, self.version, card=card, repo_type=self.repo_type, hub=self.hub)
