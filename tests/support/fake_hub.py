"""A small server on 127.0.0.1 speaking the subset of the Hugging Face Hub HTTP API our code uses.

Routes: repo create, refs, preupload, commit (NDJSON, regular files inline), tag, branch (and its delete),
tree, revision info, and resolve (HEAD/GET) for downloads. Commits are atomic: a commit is stored whole or
not at all.
Faults can be scripted per route (an HTTP status, or "drop" to close the connection without a reply),
and a token can be required for writes. Test-only: the product never imports it.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import threading
import time
import urllib.parse
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Repo:
    def __init__(self, private: bool):
        self.private = private
        self.commits: dict[str, dict[str, bytes]] = {}
        self.branches: dict[str, str] = {}
        self.tags: dict[str, str] = {}
        self.commit(
            {".gitattributes": b"*.parquet filter=lfs diff=lfs merge=lfs -text\n"}, "main", "initial commit"
        )

    def commit(self, files: dict[str, bytes], branch: str, summary: str) -> str:
        parent = self.branches.get(branch, "")
        oid = hashlib.sha1(
            f"{parent}:{summary}:{len(self.commits)}".encode() + repr(sorted(files)).encode()
        ).hexdigest()
        self.commits[oid] = dict(files)
        self.branches[branch] = oid
        return oid

    def resolve(self, rev: str) -> str | None:
        if rev in self.branches:
            return self.branches[rev]
        if rev in self.tags:
            return self.tags[rev]
        return rev if rev in self.commits else None


class FakeHub:
    def __init__(self, token: str | None = None):
        self.token = token
        self.repos: dict[tuple[str, str], Repo] = {}
        self.faults: dict[str, list[int | str]] = {}  # route -> scripted faults, one per request
        self.requests: list[tuple[str, str]] = []
        self.auth_headers: list[str] = []
        # What a hostile hub answers instead of the truth: {"etag": ..., "sha": ..., "next_page": URL,
        # "truncate": PATH (that file sent without Content-Length, cut in half), "info": trickle | endless |
        # gzip_bomb (repo info that never ends well)} (tests of our guards).
        self.hostile: dict[str, str] = {}
        self.lock = threading.Lock()
        # Requests of a route held until as many have arrived (route -> count): two clients' commits land
        # together, as in a race. Refs change under one lock, as the Hub's do (a tag is set once).
        self.together: dict[str, int] = {}
        self._barriers: dict[str, threading.Barrier] = {}
        self.refs_lock = threading.Lock()
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                hub._dispatch(self, "GET")

            def do_HEAD(self):
                hub._dispatch(self, "HEAD")

            def do_POST(self):
                hub._dispatch(self, "POST")

            def do_DELETE(self):
                hub._dispatch(self, "DELETE")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def pin(self, repo_id: str, oid: str, repo_type: str = "dataset") -> None:
        """Make the repo's current main reachable as commit `oid`: the commit a registry entry pins."""
        repo = self.repos[(repo_type, repo_id)]
        repo.commits[oid] = dict(repo.commits[repo.branches["main"]])

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    # -- plumbing ------------------------------------------------------------------------------------
    @staticmethod
    def _send(
        h, status: int, body: bytes | dict | list = b"", headers: dict | None = None, head: bool = False
    ):
        if isinstance(body, dict | list):
            body = json.dumps(body).encode()
            headers = {"Content-Type": "application/json", **(headers or {})}
        h.send_response(status)
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if not head:
            h.wfile.write(body)

    def _error(self, h, status: int, code: str, message: str, head: bool = False):
        self._send(h, status, {"error": message}, {"X-Error-Code": code, "X-Error-Message": message}, head)

    def _dispatch(self, h, method: str):
        parsed = urllib.parse.urlsplit(h.path)
        parts = [urllib.parse.unquote(p) for p in parsed.path.strip("/").split("/")]
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        auth = h.headers.get("Authorization", "")
        route = self._route_name(method, parts)
        with self.lock:
            self.requests.append((method, parsed.path))
            self.auth_headers.append(auth)
            fault = self.faults.get(route, []).pop(0) if self.faults.get(route) else None
            barrier = None
            if self.together.get(route):
                barrier = self._barriers.setdefault(route, threading.Barrier(self.together[route]))
                self.together[route] -= 1
        if barrier is not None:
            barrier.wait(timeout=60)
        if fault == "drop":
            h.close_connection = True
            h.connection.shutdown(2)
            return
        if isinstance(fault, int):
            return self._error(h, fault, "Injected", f"injected {fault} on {route}", method == "HEAD")
        if (
            method in ("POST", "DELETE")
            and route != "validate"
            and self.token
            and auth != f"Bearer {self.token}"
        ):
            return self._error(h, 401, "Unauthorized", "Invalid credentials in Authorization header")
        try:
            with self.refs_lock if method in ("POST", "DELETE") else contextlib.nullcontext():
                getattr(self, f"_{route}")(h, method, parts, body, urllib.parse.parse_qs(parsed.query))
        except KeyError as e:
            self._error(h, 404, "RepoNotFound", f"not found: {e}", method == "HEAD")

    @staticmethod
    def _route_name(method: str, parts: list[str]) -> str:
        if parts[:3] == ["api", "repos", "create"]:
            return "create"
        if parts[:2] == ["api", "validate-yaml"]:
            return "validate"
        if parts and parts[0] == "api" and len(parts) >= 5:
            return {
                "refs": "refs",
                "preupload": "preupload",
                "commit": "commit",
                "tag": "tag",
                "branch": "branch",
                "tree": "tree",
                "paths-info": "paths_info",
                "revision": "info",
            }.get(parts[4], "unknown")
        if "resolve" in parts:
            return "resolve"
        return "unknown"

    def _repo(self, parts: list[str]) -> tuple[Repo, str]:
        repo_type = parts[1].rstrip("s")
        key = (repo_type, f"{parts[2]}/{parts[3]}")
        return self.repos[key], key[1]

    # -- routes --------------------------------------------------------------------------------------
    def _unknown(self, h, method, parts, body, query):
        self._error(h, 404, "NotFound", f"no route {method} /{'/'.join(parts)}", method == "HEAD")

    def _create(self, h, method, parts, body, query):
        payload = json.loads(body)
        repo_id = (
            f"{payload['organization']}/{payload['name']}" if payload.get("organization") else payload["name"]
        )
        key = (payload.get("type") or "model", repo_id)
        if key in self.repos:
            return self._send(
                h, 409, {"error": "You already created this repo", "url": f"{self.url}/{repo_id}"}
            )
        self.repos[key] = Repo(bool(payload.get("private")))
        self._send(h, 200, {"url": f"{self.url}/{repo_id}", "name": repo_id})

    def _validate(self, h, method, parts, body, query):
        """The Hub's metadata checks that matter to us (a subset, written independently of the product)."""
        payload = json.loads(body)
        errors = validate_card_yaml(payload["content"], payload.get("repoType") or "model")
        if errors:
            return self._send(h, 400, {"errors": [{"message": e} for e in errors]})
        self._send(h, 200, {"errors": [], "warnings": []})

    def _refs(self, h, method, parts, body, query):
        repo, _ = self._repo(parts)
        ref = lambda kind, name, oid: {"name": name, "ref": f"refs/{kind}/{name}", "targetCommit": oid}  # noqa: E731
        self._send(
            h,
            200,
            {
                "branches": [ref("heads", n, o) for n, o in repo.branches.items()],
                "tags": [ref("tags", n, o) for n, o in repo.tags.items()],
                "converts": [],
            },
        )

    def _preupload(self, h, method, parts, body, query):
        repo, _ = self._repo(parts)
        files = json.loads(body)["files"]
        self._send(
            h,
            200,
            {
                "files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files],
                "commitOid": repo.branches.get(parts[5], ""),
            },
        )

    def _commit(self, h, method, parts, body, query):
        repo, repo_id = self._repo(parts)
        branch = parts[5]
        if branch not in repo.branches:
            return self._error(h, 404, "RevisionNotFound", f"branch {branch} not found")
        files = dict(repo.commits[repo.branches[branch]])
        summary = ""
        for line in body.decode().splitlines():
            item = json.loads(line)
            value = item["value"]
            if item["key"] == "header":
                summary = value.get("summary", "")
            elif item["key"] == "file":
                files[value["path"]] = base64.b64decode(value["content"])
            elif item["key"] == "deletedFile":
                files.pop(value["path"], None)
            else:
                return self._error(h, 400, "BadRequest", f"unsupported commit operation {item['key']}")
        oid = repo.commit(files, branch, summary)
        self._send(
            h, 200, {"success": True, "commitOid": oid, "commitUrl": f"{self.url}/{repo_id}/commit/{oid}"}
        )

    def _tag(self, h, method, parts, body, query):
        repo, _ = self._repo(parts)
        tag = json.loads(body)["tag"]
        oid = repo.resolve(parts[5])
        if oid is None:
            return self._error(h, 404, "RevisionNotFound", f"revision {parts[5]} not found")
        if tag in repo.tags:
            return self._error(h, 409, "Conflict", f"tag {tag} already exists")
        repo.tags[tag] = oid
        self._send(h, 200, {})

    def _branch(self, h, method, parts, body, query):
        repo, _ = self._repo(parts)
        if method == "DELETE":
            if parts[5] == "main" or repo.branches.pop(parts[5], None) is None:
                return self._error(
                    h, 404 if parts[5] != "main" else 403, "Refused", f"cannot delete {parts[5]}"
                )
            return self._send(h, 200, {})
        start = (json.loads(body) if body else {}).get("startingPoint") or "main"
        if parts[5] in repo.branches:
            return self._error(h, 409, "Conflict", f"branch {parts[5]} already exists")
        repo.branches[parts[5]] = repo.resolve(start)
        self._send(h, 200, {})

    @staticmethod
    def _entry(files: dict[str, bytes], path: str) -> dict | None:
        """A tree entry as the Hub lists it: a file with its size, or a folder (any path with files below)."""
        if path in files:
            data = files[path]
            return {"type": "file", "path": path, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}
        below = sorted(p for p in files if p.startswith(path + "/"))
        if not below:
            return None
        return {"type": "directory", "path": path, "oid": hashlib.sha1("\n".join(below).encode()).hexdigest()}

    def _tree(self, h, method, parts, body, query):
        """The folder's direct children, or (`recursive=True`) every file and folder below it."""
        repo, _ = self._repo(parts)
        oid = repo.resolve(parts[5])
        if oid is None:
            return self._error(h, 404, "RevisionNotFound", f"revision {parts[5]} not found")
        files = repo.commits[oid]
        prefix = "/".join(parts[6:]).strip("/")
        if prefix and self._entry(files, prefix) is None:
            return self._error(h, 404, "EntryNotFound", f"{prefix} not found")
        recursive = query.get("recursive", ["False"])[0].lower() == "true"
        paths = set()
        for p in files:
            if prefix and not p.startswith(prefix + "/"):
                continue
            rest = p[len(prefix) + 1 :] if prefix else p
            steps = rest.split("/")
            ends = range(1, len(steps) + 1) if recursive else [1]
            paths.update("/".join(([prefix] if prefix else []) + steps[:n]) for n in ends)
        link = {"Link": f'<{self.hostile["next_page"]}>; rel="next"'} if "next_page" in self.hostile else {}
        self._send(h, 200, [self._entry(files, p) for p in sorted(paths)], link)

    def _paths_info(self, h, method, parts, body, query):
        repo, _ = self._repo(parts)
        oid = repo.resolve(parts[5])
        if oid is None:
            return self._error(h, 404, "RevisionNotFound", f"revision {parts[5]} not found")
        wanted = urllib.parse.parse_qs(body.decode()).get("paths", [])
        entries = [self._entry(repo.commits[oid], p.strip("/")) for p in wanted]
        self._send(h, 200, [e for e in entries if e is not None])

    def _misbehave(self, h, how: str) -> None:
        """A repo-info answer that never ends well: a byte every half second ("trickle"), a chunked body
        without end ("endless"), or 1 GiB of zeros gzip-encoded into about 1 MB ("gzip_bomb")."""
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        if how == "gzip_bomb":
            pack = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
            block = b"0" * 2**20
            body = b"".join(pack.compress(block) for _ in range(1024)) + pack.flush()
            h.send_header("Content-Encoding", "gzip")
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body)
            return
        h.send_header("Connection", "close")
        h.close_connection = True
        if how == "trickle":
            h.send_header("Content-Length", "4096")
            h.end_headers()
            for _ in range(4096):
                h.wfile.write(b" ")
                h.wfile.flush()
                time.sleep(0.5)
            return
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        chunk = b"a" * 2**16
        while True:
            h.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))

    def _info(self, h, method, parts, body, query):
        if "info" in self.hostile:
            try:
                return self._misbehave(h, self.hostile["info"])
            except OSError:  # the client hung up: what a bounded client does
                h.close_connection = True
                return
        repo, repo_id = self._repo(parts)
        rev = "/".join(parts[5:]) or "main"
        oid = repo.resolve(rev)
        if oid is None:
            return self._error(h, 404, "RevisionNotFound", f"revision {rev} not found")
        self._send(
            h,
            200,
            {
                "id": repo_id,
                "_id": repo_id,
                "sha": self.hostile.get("sha", oid),
                "private": repo.private,
                "siblings": [{"rfilename": p} for p in sorted(repo.commits[oid])],
                "tags": [],
                "downloads": 0,
                "likes": 0,
                "author": repo_id.split("/")[0],
            },
        )

    def _resolve(self, h, method, parts, body, query):
        i = parts.index("resolve")
        repo_type = {"datasets": "dataset", "spaces": "space"}.get(parts[0], "model")
        repo_id = "/".join(parts[1:i] if repo_type != "model" else parts[:i])
        head = method == "HEAD"
        repo = self.repos.get((repo_type, repo_id))
        if repo is None:
            return self._error(h, 404, "RepoNotFound", f"repository {repo_id} not found", head)
        oid = repo.resolve(parts[i + 1])
        if oid is None:
            return self._error(h, 404, "RevisionNotFound", f"revision {parts[i + 1]} not found", head)
        path = "/".join(parts[i + 2 :])
        if path not in repo.commits[oid]:
            return self._error(h, 404, "EntryNotFound", f"{path} not found", head)
        data = repo.commits[oid][path]
        etag = f'"{self.hostile.get("etag") or hashlib.sha1(data).hexdigest()}"'
        if self.hostile.get("truncate") == path:  # no Content-Length, half the body, then the connection ends
            h.send_response(200)
            for k, v in {"X-Repo-Commit": oid, "ETag": etag, "Connection": "close"}.items():
                h.send_header(k, v)
            h.end_headers()
            if not head:
                h.wfile.write(data[: len(data) // 2])
            h.close_connection = True
            return
        self._send(
            h,
            200,
            data,
            {"X-Repo-Commit": oid, "ETag": etag, "Content-Type": "application/octet-stream"},
            head,
        )


SIZE_CATEGORIES = {"n<1K", "1K<n<10K", "10K<n<100K", "100K<n<1M", "1M<n<10M", "10M<n<100M", "100M<n<1B"}
LICENSES = {
    "apache-2.0",
    "mit",
    "cc-by-4.0",
    "cc-by-sa-4.0",
    "cc-by-nc-4.0",
    "cc-by-nc-sa-4.0",
    "cc0-1.0",
    "other",
    "unknown",
    "openrail",
    "llama3",
    "gemma",
}
TASK_CATEGORIES = {"question-answering", "multiple-choice", "text-generation", "text-classification"}


def validate_card_yaml(content: str, repo_type: str) -> list[str]:
    import yaml

    if not content.startswith("---\n"):
        return []  # no metadata block: the Hub only warns
    try:
        meta = yaml.safe_load(content.split("---\n", 2)[1])
    except yaml.YAMLError as e:
        return [f"YAML parse error: {e}"]
    if not isinstance(meta, dict):
        return ["metadata must be a YAML mapping"]
    errors = []
    if "license" in meta and meta["license"] not in LICENSES:
        errors.append(f'"license" must be a known license id, got {meta["license"]!r}')
    for key in ("tags", "language", "datasets", "task_categories", "size_categories"):
        if key in meta and not (isinstance(meta[key], list) and all(isinstance(v, str) for v in meta[key])):
            errors.append(f'"{key}" must be an array of strings')
    if repo_type == "dataset":
        for cat in meta.get("size_categories") or []:
            if cat not in SIZE_CATEGORIES:
                errors.append(f'"size_categories" has unknown value {cat!r}')
        for cat in meta.get("task_categories") or []:
            if cat not in TASK_CATEGORIES:
                errors.append(f'"task_categories" has unknown value {cat!r}')
        for config in meta.get("configs") or []:
            if not isinstance(config, dict) or "config_name" not in config or "data_files" not in config:
                errors.append('"configs" entries need "config_name" and "data_files"')
    if repo_type == "model" and "base_model" in meta and not isinstance(meta["base_model"], str | list):
        errors.append('"base_model" must be a string or an array of strings')
    return errors
