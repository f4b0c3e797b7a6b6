"""The Hugging Face Hub (or any server speaking its API, via HF_ENDPOINT or an explicit endpoint).

A version is one commit (atomic on the Hub) whose tree is exactly the published folder, made on a staging
branch and tagged; then main (or the branch asked for) gets the same tree. A failure before the tag leaves
no version behind, so retrying is always safe, and only the publish that set the tag moves main.
The token comes from the argument, HF_TOKEN or the huggingface_hub login; it is never logged.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import uuid
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

from huggingface_hub import (
    CommitOperationAdd,
    CommitOperationDelete,
    HfApi,
    constants,
    file_download,
    hf_hub_download,
    set_client_factory,
)
from huggingface_hub import snapshot_download as hf_snapshot_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils._http import default_client_factory

from medssr_hub.bounds import bound_response, check_settings
from medssr_hub.errors import MedSSRError
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
    verify_manifest,
)
from medssr_hub.utils import Timeout, TransportError, describe_error, positive_env

logger = logging.getLogger(__name__)

# What a hub request can fail with: HTTP errors, the network, and an answer that is not the JSON we read
# (ValueError covers JSONDecodeError; KeyError and TypeError a document of the wrong shape).
HUB_FAILURES = (HfHubHTTPError, OSError, TransportError, ValueError, KeyError, TypeError)
KEEP_ON_HUB = {".gitattributes"}
# Seconds to wait for the Hub to connect (at most 10) and for each read. huggingface_hub's own clients wait
# forever (`timeout=None`): a hub that accepts the connection and never answers would hang a publish.
TIMEOUT_ENV = "MEDSSR_HUB_TIMEOUT"
DEFAULT_TIMEOUT_S = 60.0


# What a hub answers that huggingface_hub turns into cache paths: a commit id (snapshots/<commit>,
# trees/<commit>.json, checked by common.COMMIT_ID) and a file's ETag (blobs/<etag>), a git blob's sha1
# (40 hex characters) or an LFS file's sha256 (64).
ETAG = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


_ORIGINAL_METADATA = file_download.get_hf_file_metadata
_guard_lock = threading.Lock()
_active: dict[tuple[str, str, int], int] = {}  # the hubs whose operations are running, counted


def _checked_metadata(*args, **kwargs):
    metadata = _ORIGINAL_METADATA(*args, **kwargs)
    for what, value, pattern in (("ETag", metadata.etag, ETAG), ("commit", metadata.commit_hash, COMMIT_ID)):
        if value is not None and not pattern.fullmatch(value):
            raise HubError(f"the hub answered a file with the {what} {value[:80]!r}, not a hex digest")
    return metadata


def _origin(url) -> tuple[str, str, int]:
    parts = urlsplit(str(url))
    scheme = (parts.scheme or "").lower()
    return scheme, (parts.hostname or "").lower(), parts.port or (443 if scheme == "https" else 80)


@contextmanager
def guarded(endpoint: str):
    """What a hub answers is untrusted while one of our hub operations runs (threads included):
    - huggingface_hub 2.4.0 joins a file's ETag and commit id, as the hub sent them, into the cache path it
      writes (`file_download.py`: `os.path.join(storage_folder, "blobs", etag)`), unchecked: an ETag of
      "../../x" writes outside the cache. Each file's metadata is checked first (its own
      `get_hf_file_metadata`, wrapped).
    - it follows a listing's `Link: <URL>; rel="next"` with the same headers, so a hub could name another
      server and receive the token there (redirects already drop it): `drop_token_elsewhere`.
    Outside our operations huggingface_hub behaves as it always does."""
    origin = _origin(endpoint)
    with _guard_lock:
        _active[origin] = _active.get(origin, 0) + 1
        file_download.get_hf_file_metadata = _checked_metadata
    try:
        yield
    finally:
        with _guard_lock:
            _active[origin] -= 1
            if not _active[origin]:
                del _active[origin]
            if not _active:
                file_download.get_hf_file_metadata = _ORIGINAL_METADATA


def drop_token_elsewhere(request) -> None:
    """While our hub operations run, a request to any other origin (HF_ENDPOINT aside) goes without the
    token."""
    if not _active or "authorization" not in request.headers:
        return
    origin = _origin(request.url)
    if origin not in {_origin(constants.ENDPOINT), *_active}:
        del request.headers["authorization"]
        logger.warning("Sent a request to %s://%s:%d without the token: not the configured hub", *origin)


def hub_timeout() -> float:
    return positive_env(TIMEOUT_ENV, DEFAULT_TIMEOUT_S, float, "seconds")


def _client_with_timeouts():
    client = default_client_factory()
    bound = Timeout(hub_timeout(), connect=min(10.0, hub_timeout())).as_dict()

    def fill_in_timeouts(request) -> None:
        # huggingface_hub passes `timeout=None` per request, which overrides a client default: fill in
        # each timeout it left unset (an explicit one, such as its download timeout, stays).
        current = request.extensions.get("timeout") or {}
        request.extensions["timeout"] = {k: current.get(k) or v for k, v in bound.items()}

    client.event_hooks["request"] = [fill_in_timeouts, drop_token_elsewhere, *client.event_hooks["request"]]
    client.event_hooks["response"] = [*client.event_hooks["response"], bound_response]
    return client


def install_timeouts() -> None:
    """Every huggingface_hub request of this process (ours, and datasets' and transformers' reads through
    it) gets connect and read timeouts, a total deadline and a size bound (`bounds`); set through
    huggingface_hub's documented client factory."""
    hub_timeout()  # a bad setting is an error now, not at the first request
    check_settings()
    set_client_factory(_client_with_timeouts)


class RemoteHub:
    def __init__(self, endpoint: str | None = None, token: str | None = None):
        self.endpoint = (endpoint or constants.ENDPOINT).rstrip("/")
        self._token = token  # None: HF_TOKEN or the login, resolved by huggingface_hub
        self.api = HfApi(endpoint=self.endpoint, token=token)
        install_timeouts()

    def __repr__(self) -> str:  # never show the token
        return f"RemoteHub({self.endpoint!r})"

    def _fail(self, action: str, error: BaseException) -> HubError:
        return HubError(f"{action} on {self.endpoint} failed: {describe_error(error)}")

    def _remote_manifest(self, repo_id: str, repo_type: str, revision: str) -> dict | None:
        text = self.read_text(repo_id, revision, MANIFEST, repo_type)
        try:
            return json.loads(text) if text is not None else None
        except json.JSONDecodeError as e:
            raise self._fail(f"reading {MANIFEST} of {repo_type} {repo_id}@{revision}", e) from e

    def read_text(self, repo_id: str, revision: str, filename: str, repo_type: str = "dataset") -> str | None:
        """One file of a revision (None if the revision has no such file), without the rest of the repo."""
        try:
            with guarded(self.endpoint):
                path = hf_hub_download(
                    repo_id,
                    filename,
                    repo_type=repo_type,
                    revision=revision,
                    endpoint=self.endpoint,
                    token=self._token,
                )
        except EntryNotFoundError:
            return None
        except HUB_FAILURES as e:
            raise self._fail(f"reading {filename} of {repo_type} {repo_id}@{revision}", e) from e
        return Path(path).read_text()

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
        with guarded(self.endpoint):  # listings it reads may point elsewhere: the token stays with the hub
            return self._publish(folder, repo_id, version, repo_type, private, branch, message)

    def _publish(self, folder, repo_id, version, repo_type, private, branch, message) -> PublishResult:
        check_version(version, branch)
        check_repo(repo_id, repo_type)
        logger.info(
            "Publishing %s %s@%s to %s (each request waits at most %.0fs)",
            repo_type, repo_id, version or branch, self.endpoint, hub_timeout(),
        )  # fmt: skip
        folder = Path(folder)
        manifest = build_manifest(folder)
        action = f"publishing {repo_type} {repo_id}@{version or branch}"
        revision = branch or "main"
        try:
            self.api.create_repo(
                repo_id,
                repo_type=repo_type,
                private=private,
                exist_ok=True,
                space_sdk="gradio" if repo_type == "space" else None,  # evaluate's metric Spaces are gradio
            )
            refs = self.api.list_repo_refs(repo_id, repo_type=repo_type)
            tags = {t.name: t.target_commit for t in refs.tags}
            if version is not None and version in tags:
                return self._already(repo_id, repo_type, version, tags[version], manifest)
            if branch and branch not in {b.name for b in refs.branches}:
                self.api.create_branch(repo_id, branch=branch, repo_type=repo_type, exist_ok=True)

            def commit(rev: str) -> str:
                operations = self._operations(folder, manifest, repo_id, repo_type, rev)
                summary = message or f"Publish {version or branch}"
                return self.api.create_commit(
                    repo_id, operations, commit_message=summary, repo_type=repo_type, revision=rev
                ).oid

            if version is None:  # a branch alone: no tag to race for
                oid = commit(revision)
            else:
                oid = self._tag_staged(repo_id, repo_type, version, revision, commit, message)
                if oid is None:  # another publish tagged this version first; `revision` is its to move
                    refs = self.api.list_repo_refs(repo_id, repo_type=repo_type)
                    tagged = {t.name: t.target_commit for t in refs.tags}[version]
                    return self._already(repo_id, repo_type, version, tagged, manifest)
        except MedSSRError:  # ours, already naming the problem
            raise
        except HUB_FAILURES as e:
            raise HubError(
                f"{action} on {self.endpoint} failed: {describe_error(e)}; no version was tagged, retrying is safe"
            ) from e
        if version is not None:
            try:  # the version is tagged; now `revision` gets the same tree
                commit(revision)
            except HUB_FAILURES as e:
                raise HubError(
                    f"{action} on {self.endpoint}: the version is tagged (commit {oid[:12]}) and pulls whole, "
                    f"but {revision} was not moved to it: {describe_error(e)}"
                ) from e
        logger.info(
            "Published %s %s@%s (commit %s) to %s",
            repo_type,
            repo_id,
            version or branch,
            oid[:12],
            self.endpoint,
        )
        return PublishResult(
            repo_id, repo_type, version, oid, manifest["content_id"], True, self._url(repo_id, repo_type)
        )

    def _operations(self, folder: Path, manifest: dict, repo_id: str, repo_type: str, revision: str) -> list:
        """Make `revision`'s tree exactly the folder: its files, the manifest, and deletes of files gone."""
        files = {p.relative_to(folder).as_posix(): p for p in folder_files(folder)}
        current = set(self.api.list_repo_files(repo_id, repo_type=repo_type, revision=revision))
        operations: list = [
            CommitOperationAdd(path_in_repo=r, path_or_fileobj=str(p)) for r, p in files.items()
        ]
        operations.append(
            CommitOperationAdd(path_in_repo=MANIFEST, path_or_fileobj=json.dumps(manifest, indent=2).encode())
        )
        gone = current - set(files) - {MANIFEST} - KEEP_ON_HUB
        return operations + [CommitOperationDelete(path_in_repo=path) for path in sorted(gone)]

    def _tag_staged(self, repo_id, repo_type, version, revision, commit, message) -> str | None:
        """Commit on a branch of its own, then tag that commit: the commit id, or None if the tag was taken.

        Two publishes of one version can both find it untagged. Committing to `revision` first would let
        the one that then loses the tag leave `revision` on content no tag points to. Here only the one
        that won the tag moves `revision`, so the tag and `revision` hold one content. The staging branch
        goes once the tag is set (the tag keeps its commit).
        """
        staging = f"medssr-publish-{uuid.uuid4().hex[:12]}"
        self.api.create_branch(repo_id, branch=staging, revision=revision, repo_type=repo_type)
        try:
            oid = commit(staging)
            try:
                self.api.create_tag(
                    repo_id, tag=version, revision=oid, repo_type=repo_type, tag_message=message or version
                )
            except HfHubHTTPError as e:
                if e.response is None or e.response.status_code != 409:
                    raise
                logger.info("%s %s@%s was tagged by another publish meanwhile", repo_type, repo_id, version)
                return None
            return oid
        finally:
            try:
                self.api.delete_branch(repo_id, branch=staging, repo_type=repo_type)
            except HUB_FAILURES as e:  # litter, not a wrong version: say so and go on
                logger.warning(
                    "Could not delete staging branch %s of %s: %s", staging, repo_id, describe_error(e)
                )

    def _already(self, repo_id, repo_type, version, commit, manifest) -> PublishResult:
        """A version that exists: nothing to do when it holds this content, else refused (versions are immutable)."""
        remote = self._remote_manifest(repo_id, repo_type, commit)
        if remote is None or remote["content_id"] != manifest["content_id"]:
            raise VersionExistsError(
                f"{repo_type} {repo_id}@{version} is already published on {self.endpoint} with other content "
                f"(commit {commit[:12]}); versions are immutable: publish a new version"
            )
        logger.info(
            "%s %s@%s is already published with this content: nothing to do", repo_type, repo_id, version
        )
        return PublishResult(
            repo_id, repo_type, version, commit, manifest["content_id"], False, self._url(repo_id, repo_type)
        )

    def _url(self, repo_id: str, repo_type: str) -> str:
        prefix = "datasets/" if repo_type == "dataset" else ""
        return f"{self.endpoint}/{prefix}{repo_id}"

    def pull(
        self,
        repo_id: str,
        revision: str = "main",
        repo_type: str = "dataset",
        output: str | Path | None = None,
    ) -> Path:
        check_repo(repo_id, repo_type)
        logger.info(
            "Pulling %s %s@%s from %s (each request waits at most %.0fs)",
            repo_type, repo_id, revision or "main", self.endpoint, hub_timeout(),
        )  # fmt: skip
        try:
            # The revision resolved and checked here: handed a commit id, huggingface_hub does not ask again.
            commit = self.api.repo_info(repo_id, repo_type=repo_type, revision=revision or "main").sha
            if not isinstance(commit, str) or not COMMIT_ID.fullmatch(commit):
                raise HubError(
                    f"{self.endpoint} answered {repo_type} {repo_id}@{revision} with the commit "
                    f"{str(commit)[:80]!r}, not a commit id (40 hex characters)"
                )
            with guarded(self.endpoint):
                path = hf_snapshot_download(
                    repo_id,
                    repo_type=repo_type,
                    revision=commit,
                    local_dir=output,
                    endpoint=self.endpoint,
                    token=self._token,
                )
        except (RepositoryNotFoundError, RevisionNotFoundError) as e:
            raise HubError(
                f"{repo_type} {repo_id}@{revision} not found on {self.endpoint}: {describe_error(e)}"
            ) from e
        except HUB_FAILURES as e:
            raise self._fail(f"pulling {repo_type} {repo_id}@{revision}", e) from e
        checked = verify_manifest(path, f"{repo_type} {repo_id}@{revision} from {self.endpoint}")
        logger.info(
            "Read %s %s@%s from %s into %s (%s)", repo_type, repo_id, revision, self.endpoint, path,
            f"{checked} files checked against its manifest" if checked else "no manifest to check against",
        )  # fmt: skip
        return Path(path)

    def versions(self, repo_id: str, repo_type: str = "dataset") -> dict[str, str]:
        try:
            return {
                t.name: t.target_commit for t in self.api.list_repo_refs(repo_id, repo_type=repo_type).tags
            }
        except HUB_FAILURES as e:
            raise self._fail(f"listing versions of {repo_type} {repo_id}", e) from e
