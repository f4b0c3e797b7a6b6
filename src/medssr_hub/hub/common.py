"""What both hub targets share: versions, content manifests, errors, the result of a publish."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

MANIFEST = "medssr_manifest.json"  # written into every published folder: the content id of the version
RUN_CONFIG = "medssr_config.json"  # the publishable settings a stage's release was made with
VERSION_RE = re.compile(r"^v\d+\.\d+\.\d+$")
REPO_TYPES = ("dataset", "model", "space")  # spaces: `evaluate` metrics
# ORG/NAME as the Hub names repos: each part starts and ends with a letter, digit or underscore, holds only
# those and "-" or ".", has no "--" or "..", and is at most 96 characters. So "..", ".", empty parts,
# absolute paths, backslashes and control characters are refused, and a repo id is never a path out.
_REPO_PART = r"(?!.*(?:--|\.\.))\w(?:[\w.-]{0,94}\w)?"
REPO_ID_RE = re.compile(rf"^{_REPO_PART}/{_REPO_PART}$", re.ASCII)
_BAD_REF = re.compile(r"[\x00-\x1f\x7f\\~^:?*\[]|\.\.|//|^/|/$|^-|@\{|\.lock$|^\.|/\.")


class HubError(RuntimeError):
    """A publish or pull that failed: it names the repo and the target, never the token."""


class VersionExistsError(HubError):
    """The version is already published with other content: versions are immutable."""


def check_branch(branch: str | None) -> None:
    """A branch name git and the Hub accept: no control characters, backslashes, "..", empty or hidden
    parts, leading or trailing slash."""
    if branch is not None and (not branch or len(branch) > 200 or _BAD_REF.search(branch)):
        raise ValueError(f"not a usable branch name: {branch!r}")


def check_version(version: str | None, branch: str | None = None) -> str | None:
    """A version tag must look like v1.2.3; no version (a branch-only publish, e.g. a training
    checkpoint) needs a branch other than main."""
    check_branch(branch)
    if version is None:
        if not branch or branch == "main":
            raise ValueError("a publish without a version needs a branch other than main")
        return None
    if not VERSION_RE.match(version):
        raise ValueError(f"version must look like v1.2.3, got {version!r}")
    return version


def check_repo(repo_id: str, repo_type: str) -> None:
    """The one check every repo id passes, wherever it comes from (publish, pull, a stage's publish_repo,
    a leaderboard): the Hub's naming rules (`REPO_ID_RE`)."""
    if not isinstance(repo_id, str) or not REPO_ID_RE.fullmatch(repo_id):
        raise ValueError(
            f"repo id must look like ORG/NAME (letters, digits, '_', '-', '.'; no '..' or '--', no leading or "
            f"trailing '.' or '-'), got {repo_id!r}"
        )
    if repo_type not in REPO_TYPES:
        raise ValueError(f"repo type must be one of {REPO_TYPES}, got {repo_type!r}")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def folder_files(folder: Path) -> list[Path]:
    """Files a publish carries: everything below the folder but the manifest and hidden/cache entries."""
    files = []
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder)
        if p.is_file() and rel.name != MANIFEST and not any(part.startswith(".") for part in rel.parts):
            files.append(p)
    return files


def build_manifest(folder: str | Path) -> dict:
    """sha256 and size of every file, and one content id over them: equal content, equal id."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: not a folder")
    files = {
        p.relative_to(folder).as_posix(): {"sha256": _sha256(p), "size": p.stat().st_size}
        for p in folder_files(folder)
    }
    if not files:
        raise ValueError(f"{folder}: nothing to publish (empty folder)")
    content_id = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
    return {"content_id": content_id, "files": files}


@dataclass(frozen=True)
class PublishResult:
    repo_id: str
    repo_type: str
    version: str | None  # None: a branch-only publish
    commit: str
    content_id: str
    created: bool  # False: the same content was already published under this version (a no-op)
    location: str  # a folder for the local hub, a URL for the Hub


class Hub(Protocol):
    """Both targets: a local hub root (offline default) and a Hub endpoint (huggingface.co or HF_ENDPOINT)."""

    def publish(
        self,
        folder: str | Path,
        repo_id: str,
        version: str | None,
        repo_type: str = "dataset",
        private: bool = False,
        branch: str | None = None,
        message: str | None = None,
    ) -> PublishResult: ...

    def pull(
        self,
        repo_id: str,
        revision: str = "main",
        repo_type: str = "dataset",
        output: str | Path | None = None,
    ) -> Path: ...

    def versions(self, repo_id: str, repo_type: str = "dataset") -> dict[str, str]: ...

    def read_text(
        self, repo_id: str, revision: str, filename: str, repo_type: str = "dataset"
    ) -> str | None: ...
