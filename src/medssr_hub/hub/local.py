"""A hub in a folder: the offline default, with the Hub's repo-id / revision semantics.

Layout: `ROOT/{datasets,models}/ORG/NAME/` holds `snapshots/<commit>/` (immutable, content-addressed)
and `refs.json` (tags and branches -> commit). A publish copies the folder into a temporary snapshot,
renames it into place, then rewrites refs.json atomically under a lock: a crash at any point leaves
either the old refs or the new ones, never a half-published version.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

from filelock import FileLock
from filelock import Timeout as LockTimeout

from medssr_hub.errors import InputError
from medssr_hub.hub.common import (
    COMMIT_ID,
    MANIFEST,
    HubError,
    PublishResult,
    VersionExistsError,
    build_manifest,
    check_repo,
    check_version,
    folder_files,
)
from medssr_hub.utils import atomic_write_json

logger = logging.getLogger(__name__)


class LocalHub:
    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser()

    def __repr__(self) -> str:
        return f"LocalHub({str(self.root)!r})"

    def repo_dir(self, repo_id: str, repo_type: str) -> Path:
        check_repo(repo_id, repo_type)
        if self.root.exists() and not self.root.is_dir():
            raise InputError(f"local hub root {self.root} is a file, not a folder")
        repo = self.root / f"{repo_type}s" / repo_id
        # The id check keeps ids inside; this keeps a symlinked repo folder from leading out as well.
        if not repo.resolve().is_relative_to((self.root / f"{repo_type}s").resolve()):
            raise InputError(f"repo {repo_id!r} resolves outside the hub root {self.root}")
        return repo

    def _refs(self, repo: Path) -> dict:
        path = repo / "refs.json"
        if not path.exists():
            return {"tags": {}, "branches": {}, "private": False, "log": []}
        try:
            return json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise HubError(
                f"local hub {self.root}: {path.relative_to(self.root)} is not valid JSON ({e})"
            ) from e

    def exists(self, repo_id: str, repo_type: str = "dataset") -> bool:
        return (self.repo_dir(repo_id, repo_type) / "refs.json").exists()

    def publish(
        self,
        folder: str | Path,
        repo_id: str,
        version: str | None,
        repo_type: str = "dataset",
        private: bool = False,
        branch: str | None = None,
        message: str | None = None,
    ) -> PublishResult:
        check_version(version, branch)
        repo = self.repo_dir(repo_id, repo_type)
        manifest = build_manifest(folder)
        commit = manifest["content_id"][:40]
        repo.mkdir(parents=True, exist_ok=True)
        with FileLock(str(repo / ".lock")):
            self._sweep(repo)
            refs = self._refs(repo)
            existing = refs["tags"].get(version) if version else None
            result = PublishResult(
                repo_id, repo_type, version, commit, manifest["content_id"], False, str(repo)
            )
            if existing == commit:
                logger.info(
                    "%s %s@%s is already published with this content: nothing to do",
                    repo_type,
                    repo_id,
                    version,
                )
                return result
            if existing is not None:
                raise VersionExistsError(
                    f"{repo_type} {repo_id}@{version} is already published with other content "
                    f"(commit {existing[:12]}); versions are immutable: publish a new version"
                )
            snapshot = repo / "snapshots" / commit
            if not snapshot.exists():
                self._write_snapshot(Path(folder), snapshot, manifest)
            if version:
                refs["tags"][version] = commit
            refs["branches"][branch or "main"] = commit
            refs["private"] = refs.get("private") or private
            refs["log"].append(
                {
                    "version": version,
                    "commit": commit,
                    "branch": branch or "main",
                    "message": message or f"Publish {version or branch}",
                    "time": time.time(),
                }
            )
            atomic_write_json(repo / "refs.json", refs)
        logger.info(
            "Published %s %s@%s (commit %s) to %s",
            repo_type,
            repo_id,
            version or branch,
            commit[:12],
            self.root,
        )
        return PublishResult(repo_id, repo_type, version, commit, manifest["content_id"], True, str(snapshot))

    @staticmethod
    def _sweep(repo: Path) -> None:
        """Remove the temporary snapshots of publishes that died mid-copy. Called under the repo's lock, so
        no live publish owns one (a live publish holds the lock while it copies)."""
        for tmp in (repo / "snapshots").glob(".tmp-*"):
            logger.info("Removing %s, left by a publish that did not finish", tmp)
            shutil.rmtree(tmp, ignore_errors=True)

    def _sweep_if_free(self, repo: Path) -> None:
        """`_sweep` when the lock is free at once and the hub is writable; a reader never waits or fails on it."""
        try:
            with FileLock(str(repo / ".lock"), timeout=0):
                self._sweep(repo)
        except (LockTimeout, OSError):
            pass

    @staticmethod
    def _write_snapshot(folder: Path, snapshot: Path, manifest: dict) -> None:
        snapshot.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=snapshot.parent))
        try:
            for src in folder_files(folder):
                dst = tmp / src.relative_to(folder)
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, dst)
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
            os.replace(tmp, snapshot)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def resolve(self, repo_id: str, revision: str = "main", repo_type: str = "dataset") -> str:
        """A tag, a branch or a commit (or a prefix of at least 7 characters) -> the commit."""
        repo = self.repo_dir(repo_id, repo_type)
        refs = self._refs(repo)
        if not refs["tags"] and not refs["branches"]:
            raise HubError(f"{repo_type} {repo_id} is not in the local hub at {self.root}")
        revision = revision or "main"
        commit = refs["tags"].get(revision) or refs["branches"].get(revision)
        if commit is None and len(revision) >= 7:
            matches = [p.name for p in (repo / "snapshots").iterdir() if p.name.startswith(revision)]
            commit = matches[0] if len(matches) == 1 else None
        if commit is None:
            known = sorted(refs["tags"]) + sorted(refs["branches"])
            raise HubError(
                f"{repo_type} {repo_id} has no revision {revision!r} in {self.root}; known: {known}"
            )
        # refs.json is a file anyone with write access may edit: what it names is a commit id (40 hex
        # characters, as our publishes write them) or it never becomes a path.
        if not isinstance(commit, str) or not COMMIT_ID.fullmatch(commit):
            raise HubError(
                f"local hub {self.root}: {repo_type} {repo_id}@{revision} points at {str(commit)[:80]!r}, "
                "not a commit id (40 hex characters): refs.json was edited by hand or corrupted"
            )
        return commit

    def pull(
        self,
        repo_id: str,
        revision: str = "main",
        repo_type: str = "dataset",
        output: str | Path | None = None,
    ) -> Path:
        commit = self.resolve(repo_id, revision, repo_type)
        self._sweep_if_free(self.repo_dir(repo_id, repo_type))
        snapshot = self.repo_dir(repo_id, repo_type) / "snapshots" / commit
        logger.info(
            "Reading %s %s@%s (commit %s) from %s", repo_type, repo_id, revision, commit[:12], self.root
        )
        if output is None:
            return snapshot
        output = Path(output)
        shutil.copytree(snapshot, output, dirs_exist_ok=True, copy_function=shutil.copyfile)
        return output

    def read_text(self, repo_id: str, revision: str, filename: str, repo_type: str = "dataset") -> str | None:
        """One file of a revision, or None if the revision has no such file."""
        path = (
            self.repo_dir(repo_id, repo_type)
            / "snapshots"
            / self.resolve(repo_id, revision, repo_type)
            / filename
        )
        return path.read_text() if path.is_file() else None

    def versions(self, repo_id: str, repo_type: str = "dataset") -> dict[str, str]:
        return dict(self._refs(self.repo_dir(repo_id, repo_type))["tags"])
