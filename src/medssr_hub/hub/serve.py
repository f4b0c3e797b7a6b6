"""The local hub over the Hub's own HTTP API, read-only, so that the Hub's clients read what we publish.

`medssr-hub hub-serve` serves the local hub on 127.0.0.1; with `HF_ENDPOINT=http://127.0.0.1:PORT` set,
`datasets.load_dataset("ORG/NAME", revision="v0.1.0")` (and its configs), `huggingface_hub.snapshot_download`,
`hf download` and `AutoModelForCausalLM.from_pretrained("ORG/NAME", revision=...)` read our repos exactly as
they read the Hub's: the same calls, no code of ours in the client.

Why a server and not the Hub's cache layout: a cache laid out as huggingface_hub lays it out
(`datasets--ORG--NAME/refs/<tag>`, `snapshots/<commit>/`) serves `snapshot_download` and transformers
offline, but `datasets.load_dataset` in offline mode never reads it (datasets 4: "Couldn't reach 'ORG/NAME' on
the Hub (OfflineModeIsEnabled)", tried here): it resolves a repo through the Hub API, which is what every
client speaks. So we speak it, for the routes those clients call (below), and nothing else.

What it answers, per repo type (`datasets` or `models`), revision a tag, branch or commit:
- `GET /api/{type}/ORG/NAME[/revision/REV]`: the repo's info (`sha`, `siblings`);
- `GET /api/{type}/ORG/NAME/tree/REV[/PATH][?recursive=true]` and `POST .../paths-info/REV`: listings;
- `GET|HEAD /[datasets/]ORG/NAME/resolve/REV/PATH`: the file, with `X-Repo-Commit`, an `ETag` (its sha256,
  from the version's manifest, else computed) and byte ranges.

It is a local, read-only server: it binds 127.0.0.1 by default, writes nothing, and serves only regular files
inside a snapshot (a path with `..`, or a link that leads out of its snapshot, is a 404). Whatever a client
asks, the answer comes from the local hub's own refs: the same checks as `medssr-hub pull` (`LocalHub`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import urllib.parse
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from medssr_hub.errors import InputError
from medssr_hub.hub.common import MANIFEST, HubError
from medssr_hub.hub.local import LocalHub

logger = logging.getLogger(__name__)

TYPES = {"datasets": "dataset", "models": "model"}
RANGE = re.compile(r"bytes=(\d*)-(\d*)$")
CHUNK = 1 << 20


class NotFound(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


class LocalHubAPI:
    """The read side of the Hub API over one `LocalHub`: pure functions of (repo, revision, path)."""

    def __init__(self, hub: LocalHub):
        self.hub = hub
        self._sha256: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()

    def snapshot(self, repo_id: str, repo_type: str, revision: str) -> tuple[str, Path]:
        """(commit, snapshot folder); NotFound for an unknown repo or revision."""
        try:
            repo = self.hub.repo_dir(repo_id, repo_type)
        except InputError as e:
            raise NotFound("RepoNotFound", str(e)) from e
        if not (repo / "refs.json").exists():
            raise NotFound("RepoNotFound", f"{repo_type} {repo_id} is not in this hub")
        try:
            commit = self.hub.resolve(repo_id, revision, repo_type)
        except HubError as e:
            raise NotFound("RevisionNotFound", str(e)) from e
        return commit, repo / "snapshots" / commit

    @staticmethod
    def files(snapshot: Path) -> dict[str, Path]:
        """Every regular file of a snapshot by its repo path; links that lead out of it are not files here."""
        root = snapshot.resolve()
        found = {}
        for p in sorted(snapshot.rglob("*")):
            rel = p.relative_to(snapshot)
            if any(part.startswith(".") for part in rel.parts) or not p.is_file():
                continue
            if p.resolve().is_relative_to(root):
                found[rel.as_posix()] = p
        return found

    def file(self, snapshot: Path, path: str) -> Path:
        parts = path.split("/")
        if not path or any(part in ("", ".", "..") or part.startswith(".") for part in parts):
            raise NotFound("EntryNotFound", f"{path!r} is not a file of this revision")
        target = snapshot.joinpath(*parts)
        if not target.is_file() or not target.resolve().is_relative_to(snapshot.resolve()):
            raise NotFound("EntryNotFound", f"{path} is not a file of this revision")
        return target

    def sha256(self, commit: str, snapshot: Path, path: str, target: Path) -> str:
        """A file's sha256: from the version's manifest (written at publish), else computed once."""
        key = (commit, path)
        with self._lock:
            if key in self._sha256:
                return self._sha256[key]
        digest = None
        manifest = snapshot / MANIFEST
        if manifest.is_file():
            try:
                entry = json.loads(manifest.read_text()).get("files", {}).get(path)
                digest = entry.get("sha256") if isinstance(entry, dict) else None
            except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
                digest = None
        if not (isinstance(digest, str) and re.fullmatch(r"[0-9a-f]{64}", digest)):
            h = hashlib.sha256()
            with target.open("rb") as f:
                for block in iter(lambda: f.read(CHUNK), b""):
                    h.update(block)
            digest = h.hexdigest()
        with self._lock:
            self._sha256[key] = digest
        return digest

    def entry(self, files: dict[str, Path], path: str, commit: str, snapshot: Path) -> dict | None:
        """A tree entry as the Hub lists one: a file (size, oid, lfs) or a folder."""
        if path in files:
            size = files[path].stat().st_size
            digest = self.sha256(commit, snapshot, path, files[path])
            return {"type": "file", "path": path, "size": size, "oid": digest}
        if any(p.startswith(path + "/") for p in files):
            oid = hashlib.sha1(f"{commit}:{path}".encode()).hexdigest()
            return {"type": "directory", "path": path, "oid": oid}
        return None

    def info(self, repo_id: str, repo_type: str, revision: str) -> dict:
        commit, snapshot = self.snapshot(repo_id, repo_type, revision)
        files = self.files(snapshot)
        return {
            "id": repo_id,
            "_id": repo_id,
            "author": repo_id.split("/")[0],
            "sha": commit,
            "private": False,
            "disabled": False,
            "gated": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "lastModified": datetime.fromtimestamp(snapshot.stat().st_mtime, UTC).strftime(
                "%Y-%m-%dT%H:%M:%S.000Z"
            ),
            "siblings": [{"rfilename": p} for p in files],
        }

    def tree(self, repo_id: str, repo_type: str, revision: str, prefix: str, recursive: bool) -> list[dict]:
        commit, snapshot = self.snapshot(repo_id, repo_type, revision)
        files = self.files(snapshot)
        prefix = prefix.strip("/")
        if prefix and self.entry(files, prefix, commit, snapshot) is None:
            raise NotFound("EntryNotFound", f"{prefix} is not in this revision")
        paths = set()
        for p in files:
            if prefix and not p.startswith(prefix + "/"):
                continue
            steps = (p[len(prefix) + 1 :] if prefix else p).split("/")
            for n in range(1, len(steps) + 1) if recursive else [1]:
                paths.add("/".join(([prefix] if prefix else []) + steps[:n]))
        return [e for e in (self.entry(files, p, commit, snapshot) for p in sorted(paths)) if e]

    def paths_info(self, repo_id: str, repo_type: str, revision: str, paths: list[str]) -> list[dict]:
        commit, snapshot = self.snapshot(repo_id, repo_type, revision)
        files = self.files(snapshot)
        return [e for e in (self.entry(files, p.strip("/"), commit, snapshot) for p in paths) if e]


def _handler(api: LocalHubAPI):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "medssr-hub-serve"

        def log_message(self, fmt, *args):  # through logging, at debug: a client downloads many files
            logger.debug("%s %s", self.address_string(), fmt % args)

        def do_GET(self):
            self._dispatch(head=False)

        def do_HEAD(self):
            self._dispatch(head=True)

        def do_POST(self):
            self._dispatch(head=False, post=True)

        def _json(self, status: int, payload, head: bool = False, headers: dict | None = None):
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            if not head:
                self.wfile.write(body)

        def _error(self, status: int, code: str, message: str, head: bool):
            self._json(status, {"error": message}, head, {"X-Error-Code": code, "X-Error-Message": message})

        def _dispatch(self, head: bool, post: bool = False):
            url = urllib.parse.urlsplit(self.path)
            parts = [urllib.parse.unquote(p) for p in url.path.strip("/").split("/")]
            query = urllib.parse.parse_qs(url.query)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(min(length, 1 << 20)) if length else b""
            try:
                if parts[0] == "api" and len(parts) >= 4 and parts[1] in TYPES:
                    self._api(parts, query, body, head, post)
                elif "resolve" in parts and not post:
                    self._resolve(parts, head)
                else:
                    raise NotFound("NotFound", f"no route {self.command} {url.path}")
            except NotFound as e:
                self._error(404, e.code, str(e), head)
            except (BrokenPipeError, ConnectionResetError):
                pass

        def _api(self, parts, query, body, head, post):
            repo_type, repo_id = TYPES[parts[1]], f"{parts[2]}/{parts[3]}"
            verb = parts[4] if len(parts) > 4 else "revision"
            if verb == "revision" and not post:
                revision = "/".join(parts[5:]) or "main"
                return self._json(200, api.info(repo_id, repo_type, revision), head)
            if verb == "tree" and not post and len(parts) >= 6:
                recursive = query.get("recursive", ["false"])[0].lower() == "true"
                entries = api.tree(repo_id, repo_type, parts[5], "/".join(parts[6:]), recursive)
                return self._json(200, entries, head)
            if verb == "paths-info" and post and len(parts) >= 6:
                form = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
                try:  # huggingface_hub sends a form; a JSON body is accepted too
                    paths = form.get("paths") or json.loads(body or b"{}").get("paths", [])
                except (json.JSONDecodeError, AttributeError):
                    paths = []
                return self._json(200, api.paths_info(repo_id, repo_type, parts[5], list(paths)), head)
            raise NotFound("NotFound", f"no route {self.command} /{'/'.join(parts)}")

        def _resolve(self, parts, head):
            i = parts.index("resolve")
            repo_type = "dataset" if parts[0] == "datasets" else "model"
            ident = parts[1:i] if repo_type == "dataset" else parts[:i]
            if len(ident) != 2 or len(parts) < i + 3:
                raise NotFound("RepoNotFound", f"/{'/'.join(parts)} names no ORG/NAME/resolve/REV/PATH")
            commit, snapshot = api.snapshot("/".join(ident), repo_type, parts[i + 1])
            path = "/".join(parts[i + 2 :])
            target = api.file(snapshot, path)
            size = target.stat().st_size
            start, end = 0, size - 1
            ranged = RANGE.match(self.headers.get("Range", "") or "")
            if ranged and (ranged.group(1) or ranged.group(2)):
                if ranged.group(1):
                    start = int(ranged.group(1))
                    end = min(int(ranged.group(2)), size - 1) if ranged.group(2) else size - 1
                else:  # the last N bytes
                    start = max(size - int(ranged.group(2)), 0)
                if start > end or start >= size:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{size}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
            digest = api.sha256(commit, snapshot, path, target)
            self.send_response(206 if ranged and (start, end) != (0, size - 1) else 200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(end - start + 1))
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("X-Repo-Commit", commit)
            self.send_header("ETag", f'"{digest}"')
            if ranged:
                self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
            self.end_headers()
            if head:
                return
            with target.open("rb") as f:
                f.seek(start)
                remaining = end - start + 1
                while remaining > 0:
                    block = f.read(min(CHUNK, remaining))
                    if not block:
                        break
                    self.wfile.write(block)
                    remaining -= len(block)

    return Handler


def make_server(root: str | Path, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """The server (not yet serving); `port` 0 picks a free one (`server.server_address[1]`)."""
    hub = LocalHub(root)
    if not hub.root.is_dir():
        raise InputError(f"local hub {hub.root}: no such folder (publish something first, or pass --root)")
    server = ThreadingHTTPServer((host, port), _handler(LocalHubAPI(hub)))
    server.daemon_threads = True
    return server


def serve(root: str | Path, host: str = "127.0.0.1", port: int = 8090) -> None:
    """Serve until interrupted, printing the one line a client needs."""
    server = make_server(root, host, port)
    url = f"http://{host}:{server.server_address[1]}"
    print(f"Serving the local hub {root} read-only at {url}", flush=True)
    print(
        f"  export HF_ENDPOINT={url}   # datasets, huggingface_hub, hf and transformers now read it",
        flush=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


__all__ = ["LocalHubAPI", "make_server", "serve"]
