"""Names that become paths or refs: repo ids, versions, branches. One check for each, used by the hub
(publish, pull), every stage's publish settings, and leaderboards. Ground layer: imports nothing of ours.
"""

from __future__ import annotations

import re

from medssr_hub.errors import InputError

VERSION_RE = re.compile(r"^v\d+\.\d+\.\d+$")
REPO_TYPES = ("dataset", "model", "space")  # spaces: `evaluate` metrics
# ORG/NAME as the Hub names repos: each part starts and ends with a letter, digit or underscore, holds only
# those and "-" or ".", has no "--" or "..", and is at most 96 characters. So "..", ".", empty parts,
# absolute paths, backslashes and control characters are refused, and a repo id is never a path out.
_REPO_PART = r"(?!.*(?:--|\.\.))\w(?:[\w.-]{0,94}\w)?"
REPO_ID_RE = re.compile(rf"^{_REPO_PART}/{_REPO_PART}$", re.ASCII)
_BAD_REF = re.compile(r"[\x00-\x1f\x7f\\~^:?*\[]|\.\.|//|^/|/$|^-|@\{|\.lock$|^\.|/\.")


def check_branch(branch: str | None) -> None:
    """A branch name git and the Hub accept: no control characters, backslashes, "..", empty or hidden
    parts, leading or trailing slash."""
    if branch is not None and (not branch or len(branch) > 200 or _BAD_REF.search(branch)):
        raise InputError(f"not a usable branch name: {branch!r}")


def check_version(version: str | None, branch: str | None = None) -> str | None:
    """A version tag must look like v1.2.3; no version (a branch-only publish, e.g. a training
    checkpoint) needs a branch other than main."""
    check_branch(branch)
    if version is None:
        if not branch or branch == "main":
            raise InputError("a publish without a version needs a branch other than main")
        return None
    if not isinstance(version, str) or not VERSION_RE.fullmatch(version):
        raise InputError(f"version must look like v1.2.3, got {version!r}")
    return version


def check_repo(repo_id: str, repo_type: str) -> None:
    """The one check every repo id passes, wherever it comes from (publish, pull, a stage's publish_repo,
    a leaderboard): the Hub's naming rules (`REPO_ID_RE`)."""
    if not isinstance(repo_id, str) or not REPO_ID_RE.fullmatch(repo_id):
        raise InputError(
            f"repo id must look like ORG/NAME (letters, digits, '_', '-', '.'; no '..' or '--', no leading or "
            f"trailing '.' or '-'), got {repo_id!r}"
        )
    if repo_type not in REPO_TYPES:
        raise InputError(f"repo type must be one of {REPO_TYPES}, got {repo_type!r}")
