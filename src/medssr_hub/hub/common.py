"""What both hub targets share: versions, content manifests, errors, the result of a publish."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from medssr_hub.errors import InputError, ServiceError
from medssr_hub.names import (  # re-exported: the one name check, also used by configs (ground layer)
    REPO_ID_RE,
    REPO_TYPES,
    VERSION_RE,
    check_branch,
    check_repo,
    check_version,
)
from medssr_hub.utils import hash_file

# A commit id, as the Hub writes them and as our local hub names its snapshots: 40 hex characters. What a
# hub or a refs file names as a commit becomes a path only if it is one.
COMMIT_ID = re.compile(r"[0-9a-f]{40}")
MANIFEST = "medssr_manifest.json"  # written into every published folder: the content id of the version
RUN_CONFIG = "medssr_config.json"  # the publishable settings a stage's release was made with
__all__ = ["REPO_ID_RE", "REPO_TYPES", "VERSION_RE", "check_branch", "check_repo", "check_version"]


class HubError(ServiceError):
    """A publish or pull that failed: it names the repo and the target, never the token."""


class VersionExistsError(HubError):
    """The version is already published with other content: versions are immutable."""


def folder_files(folder: Path) -> list[Path]:
    """Files a publish carries: everything below the folder but the manifest and hidden/cache entries.

    A link is carried as the file it points to only when that file is inside the folder, or in the blobs
    of the Hugging Face cache repo whose snapshot the folder is (a pulled snapshot is links to blobs):
    `ln -s /etc/passwd art/leak.txt` is refused, never published."""
    root = folder.resolve()
    blobs = root.parent.parent / "blobs" if root.parent.name == "snapshots" else None
    files = []
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder)
        if not p.is_file() or rel.name == MANIFEST or any(part.startswith(".") for part in rel.parts):
            continue
        target = p.resolve()
        if not (target.is_relative_to(root) or (blobs is not None and target.is_relative_to(blobs))):
            raise InputError(
                f"{folder}: {rel.as_posix()} leads outside the folder (a link): refusing to publish what it "
                "points to; copy the file in if it belongs there"
            )
        files.append(p)
    return files


def build_manifest(folder: str | Path) -> dict:
    """sha256 and size of every file, and one content id over them: equal content, equal id."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: not a folder")
    files = {
        p.relative_to(folder).as_posix(): {"sha256": hash_file(p).hexdigest(), "size": p.stat().st_size}
        for p in folder_files(folder)
    }
    if not files:
        raise InputError(f"{folder}: nothing to publish (empty folder)")
    content_id = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
    return {"content_id": content_id, "files": files}


def verify_manifest(folder: str | Path, where: str) -> int:
    """Check a pulled folder against the manifest it carries: every file it lists is there, with its size
    and sha256. A file that differs (a download cut short, a body changed on the way) is removed, so that no
    partial file stays under its final name and the next pull fetches it again, and the pull is an error
    naming it. Returns the files checked (0: no manifest, as in a repo we did not publish).

    A folder that passed is marked (a hidden file named after the content id), so a pull of the same
    version does not hash its gigabytes again."""
    folder = Path(folder)
    manifest_file = folder / MANIFEST
    if not manifest_file.is_file():
        return 0
    try:
        manifest = json.loads(manifest_file.read_text())
        files = manifest["files"]
        content_id = str(manifest["content_id"])
        assert isinstance(files, dict) and re.fullmatch(r"[0-9a-f]{64}", content_id)
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AssertionError) as e:
        raise HubError(
            f"{where}: its {MANIFEST} is not a manifest ({type(e).__name__}); not reading it"
        ) from e
    marker = folder / f".medssr-verified-{content_id[:16]}"
    if marker.exists():
        return len(files)
    root = folder.resolve()
    for name, entry in sorted(files.items()):
        path = folder / name
        if not path.resolve().is_relative_to(root) and not path.is_symlink():  # a name that leads outside
            raise HubError(f"{where}: its manifest names {name!r}, outside the folder")
        expected = (entry or {}).get("size"), (entry or {}).get("sha256")
        problem = None
        if not path.is_file():
            problem = "is missing"
        elif path.stat().st_size != expected[0]:
            problem = f"has {path.stat().st_size:,} bytes, the manifest says {expected[0]!r}"
        elif hash_file(path).hexdigest() != expected[1]:
            problem = "has other bytes than the manifest's sha256"
        if problem:
            for stale in {path.resolve(), path} if path.exists() or path.is_symlink() else ():
                stale.unlink(missing_ok=True)
            raise HubError(
                f"{where}: {name} {problem} (a download cut short or changed on the way); removed it, so a "
                "retry fetches it again"
            )
    marker.touch()
    return len(files)


@dataclass(frozen=True)
class PublishResult:
    repo_id: str
    repo_type: str
    version: str | None  # None: a branch-only publish
    commit: str
    content_id: str
    created: bool  # False: the same content was already published under this version (a no-op)
    location: str  # a folder for the local hub, a URL for the Hub

    @property
    def described(self) -> str:
        """`repo@version (location)`, as stages and runs report what they published."""
        return f"{self.repo_id}@{self.version} ({self.location})"


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
