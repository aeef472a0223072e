"""A loopback stand-in for the Hugging Face hub's HTTP API, just enough for `snapshot_download`.

It answers what huggingface_hub 1.x asks, the way the hub answers it:
- `GET /api/{models|datasets}/<repo>/revision/<rev>`: repo info with the commit `sha`;
- `GET /api/{models|datasets}/<repo>/tree/<commit>?recursive=...`: the file list (`oid`, `size`, `lfs`);
- `HEAD|GET /[datasets/]<repo>/resolve/<rev>/<path>`: `X-Repo-Commit`, `ETag` (git blob sha1) and
  `Content-Length` for small files; for "LFS" files a 302 to a CDN-like URL on another host name
  (`localhost` instead of `127.0.0.1`) with `X-Linked-Etag` (sha256) and `X-Linked-Size`, as the hub does;
- `Range: bytes=N-` -> 206 with `Content-Range` (huggingface_hub retries a dropped file that way).
No `X-Xet-*` header and no `xetHash` is ever sent, which keeps huggingface_hub on its plain HTTP path.
Errors carry the hub's `X-Error-Code` (RepoNotFound, RevisionNotFound, GatedRepo) so they map to the
same exceptions. Fault for tests: `stall_after` (send N bytes of a file, then hang until `release()`,
then drop the connection); `stalled` is set once a stall began.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

LFS_MIN_SIZE = 1024  # files at least this big are served the LFS way (redirect + X-Linked-*)


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class FakeRepo:
    """One repo: commits (hash -> files) and refs (branch -> commit hash)."""

    repo_id: str
    repo_type: str = "model"
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)
    gated: bool = False  # files need a bearer token equal to the hub's `token`

    def add_commit(self, files: dict[str, bytes], branch: str = "main") -> str:
        digest = hashlib.sha1(json.dumps(sorted((k, git_blob_sha1(v)) for k, v in files.items())).encode())
        commit = digest.hexdigest()
        self.commits[commit] = files
        self.refs[branch] = commit
        return commit

    def resolve(self, revision: str) -> str | None:
        return self.refs.get(revision) or (revision if revision in self.commits else None)


class FakeHub:
    """`with FakeHub() as hub:` serves on 127.0.0.1:<free port>; `hub.endpoint` goes in HF_ENDPOINT."""

    def __init__(self, token: str | None = None) -> None:
        self.token = token
        self.repos: dict[tuple[str, str], FakeRepo] = {}
        self.stall_after: dict[str, int] = {}
        self.stalled = threading.Event()
        self._release = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def add(self, repo_id: str, files: dict[str, bytes], repo_type: str = "model", **kw) -> FakeRepo:
        repo = FakeRepo(repo_id, repo_type, **kw)
        repo.add_commit(files)
        self.repos[(repo_type, repo_id)] = repo
        return repo

    def release(self) -> None:
        """Let stalled responses finish (as a dropped connection)."""
        self._release.set()

    def __enter__(self) -> FakeHub:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


_API = re.compile(r"^/api/(models|datasets)/([^/]+/[^/]+)/(revision|tree)/([^/]+)(/.*)?$")
_RESOLVE = re.compile(r"^/(datasets/)?([^/]+/[^/]+)/resolve/([^/]+)/(.+)$")
_CDN = re.compile(r"^/cdn/([0-9a-f]{64})/(.+)$")


def _handler(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # keep test output clean
            pass

        def do_HEAD(self) -> None:
            self._route(body=False)

        def do_GET(self) -> None:
            self._route(body=True)

        def _route(self, body: bool) -> None:
            path = unquote(urlsplit(self.path).path)
            if m := _API.match(path):
                return self._api(m.group(1)[:-1], m.group(2), m.group(3), m.group(4))
            if m := _RESOLVE.match(path):
                return self._resolve(
                    "dataset" if m.group(1) else "model", m.group(2), m.group(3), m.group(4), body
                )
            if m := _CDN.match(path):
                return self._cdn(m.group(1), m.group(2), body)
            self._error(404, "EntryNotFound", "no such route")

        def _repo(self, repo_type: str, repo_id: str) -> FakeRepo | None:
            repo = hub.repos.get((repo_type, repo_id))
            if repo is None:
                self._error(404, "RepoNotFound", "Repository not found")
            return repo

        def _authorized(self, repo: FakeRepo) -> bool:
            if not repo.gated or self.headers.get("Authorization") == f"Bearer {hub.token}":
                return True
            self._error(401, "GatedRepo", f"Access to model {repo.repo_id} is restricted.")
            return False

        def _api(self, repo_type: str, repo_id: str, what: str, revision: str) -> None:
            if (repo := self._repo(repo_type, repo_id)) is None:
                return
            if (commit := repo.resolve(revision)) is None:
                return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
            files = repo.commits[commit]
            if what == "revision":
                siblings = [{"rfilename": name} for name in files]
                info = {
                    "id": repo_id,
                    "sha": commit,
                    "private": False,
                    "gated": repo.gated,
                    "siblings": siblings,
                }
                return self._json(info, commit)
            tree = []
            for name, data in sorted(files.items()):
                entry = {"type": "file", "path": name, "size": len(data), "oid": git_blob_sha1(data)}
                if len(data) >= LFS_MIN_SIZE:
                    entry["lfs"] = {
                        "oid": hashlib.sha256(data).hexdigest(),
                        "size": len(data),
                        "pointerSize": 134,
                    }
                tree.append(entry)
            self._json(tree, commit)

        def _resolve(self, repo_type: str, repo_id: str, revision: str, name: str, body: bool) -> None:
            if (repo := self._repo(repo_type, repo_id)) is None or not self._authorized(repo):
                return
            if (commit := repo.resolve(revision)) is None:
                return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
            data = repo.commits[commit].get(name)
            if data is None:
                return self._error(404, "EntryNotFound", f"{name} does not exist", commit)
            if len(data) >= LFS_MIN_SIZE:  # the hub sends LFS files to its CDN, another host
                sha = hashlib.sha256(data).hexdigest()
                self.send_response(302)
                self.send_header("Location", f"http://localhost:{hub.port}/cdn/{sha}/{name}")
                self.send_header("X-Repo-Commit", commit)
                self.send_header("X-Linked-Etag", f'"{sha}"')
                self.send_header("X-Linked-Size", str(len(data)))
                self.send_header("ETag", f'"{git_blob_sha1(data)}"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self._send(data, name, body, {"X-Repo-Commit": commit, "ETag": f'"{git_blob_sha1(data)}"'})

        def _cdn(self, sha: str, name: str, body: bool) -> None:
            for repo in hub.repos.values():
                for files in repo.commits.values():
                    data = files.get(name)
                    if data is not None and hashlib.sha256(data).hexdigest() == sha:
                        return self._send(data, name, body, {"ETag": f'"{sha}"'})
            self._error(404, "EntryNotFound", "no such blob")

        def _send(self, data: bytes, name: str, body: bool, headers: dict[str, str]) -> None:
            start = 0
            if m := re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", "")):
                start = int(m.group(1))
            part = data[start:]
            self.send_response(206 if start else 200)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(len(part)))
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.end_headers()
            if not body:
                return
            stall = hub.stall_after.pop(name, None)
            if stall is None:
                self.wfile.write(part)
                return
            self.wfile.write(part[:stall])
            self.wfile.flush()
            hub.stalled.set()
            hub._release.wait(timeout=60)
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)

        def _json(self, payload, commit: str) -> None:
            raw = json.dumps(payload).encode()
            self._send(raw, "", True, {"Content-Type": "application/json", "X-Repo-Commit": commit})

        def _error(self, status: int, code: str, message: str, commit: str | None = None) -> None:
            raw = json.dumps({"error": message}).encode()
            self.send_response(status)
            self.send_header("X-Error-Code", code)
            self.send_header("X-Error-Message", message)
            if commit:
                self.send_header("X-Repo-Commit", commit)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(raw)

    return Handler
