"""A Hugging Face Hub-protocol server on 127.0.0.1 for tests (docs/hub-protocol.md).

It answers what the real ``huggingface_hub`` client asks when it downloads (resolve
HEAD/GET with Range, revision and tree listings, typed 404s) and when it uploads
(repo and branch creation, YAML validation, preupload, NDJSON commits with base64
"regular" files). Repos live in memory: ``{repo_id: Repo}``, each commit a full
``{path: bytes}`` snapshot.
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit


@dataclass
class Repo:
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)  # sha -> files
    refs: dict[str, str] = field(default_factory=dict)  # branch -> sha
    private: bool = False  # create_repo's and update_repo_settings' "visibility"

    def resolve(self, revision: str) -> str | None:
        if revision in self.refs:
            return self.refs[revision]
        return revision if revision in self.commits else None


class HubServer:
    """``with HubServer() as hub: hub.url`` -- serve until the block ends."""

    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.requests: list[tuple[str, str]] = []  # (method, path) in arrival order
        self.user_agents: list[str] = []  # User-Agent of each request, same order
        self.truncate_after: int | None = None  # fault: file GETs stop after N bytes, then close
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- content
    def commit(
        self, repo_id: str, files: dict[str, bytes], branch: str = "main", message: str = "commit"
    ) -> str:
        """Add a commit on ``branch`` (created with the repo if missing); returns its 40-hex sha."""
        with self._lock:
            repo = self.repos.setdefault(repo_id, Repo())
            parent = repo.refs.get(branch)
            snapshot = dict(repo.commits.get(parent, {}))
            snapshot.update(files)
            digest = hashlib.sha1()
            digest.update(f"{repo_id}\0{parent}\0{message}\0{len(repo.commits)}".encode())
            for path in sorted(snapshot):
                digest.update(path.encode() + b"\0" + hashlib.sha256(snapshot[path]).digest())
            sha = digest.hexdigest()
            repo.commits[sha] = snapshot
            repo.refs[branch] = sha
            return sha

    # -- lifecycle
    def start(self) -> HubServer:
        handler = type("Handler", (_Handler,), {"hub": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join(timeout=5)
            self._httpd = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class _Handler(BaseHTTPRequestHandler):
    hub: HubServer
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    # -- helpers
    def _send(
        self, status: int, body: bytes = b"", headers: dict | None = None, head_only: bool = False
    ) -> None:
        self.send_response(status)
        headers = dict(headers or {})
        headers.setdefault("Content-Length", str(len(body)))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        if body and not head_only:
            self.wfile.write(body)

    def _json(self, status: int, data, head_only: bool = False) -> None:
        self._send(
            status, json.dumps(data).encode(), {"Content-Type": "application/json"}, head_only
        )

    def _error(
        self,
        code: str,
        message: str,
        status: int = 404,
        head_only: bool = False,
        headers: dict | None = None,
    ) -> None:
        body = json.dumps({"error": message}).encode()
        self._send(
            status,
            body,
            {
                "Content-Type": "application/json",
                "X-Error-Code": code,
                "X-Error-Message": message,
                **(headers or {}),
            },
            head_only,
        )

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _repo(self, repo_id: str, head_only: bool = False) -> Repo | None:
        repo = self.hub.repos.get(repo_id)
        if repo is None:
            self._error("RepoNotFound", f"Repository {repo_id} not found", head_only=head_only)
        return repo

    def _snapshot(self, repo_id: str, revision: str, head_only: bool = False):
        repo = self._repo(repo_id, head_only)
        if repo is None:
            return None, None
        sha = repo.resolve(revision)
        if sha is None:
            self._error("RevisionNotFound", f"Invalid rev id: {revision}", head_only=head_only)
            return None, None
        return sha, repo.commits[sha]

    def _route(self) -> tuple[list[str], str]:
        parts = urlsplit(self.path)
        return [unquote(p) for p in parts.path.strip("/").split("/")], parts.query

    # -- GET / HEAD
    def do_HEAD(self) -> None:
        self._get(head_only=True)

    def do_GET(self) -> None:
        self._get(head_only=False)

    def _get(self, head_only: bool) -> None:
        self.hub.requests.append((self.command, self.path))
        self.hub.user_agents.append(self.headers.get("User-Agent", ""))
        p, _ = self._route()
        if len(p) >= 5 and p[2] == "resolve":
            return self._resolve(f"{p[0]}/{p[1]}", p[3], "/".join(p[4:]), head_only)
        if len(p) >= 4 and p[:2] == ["api", "models"]:
            repo_id = f"{p[2]}/{p[3]}"
            rest = p[4:]
            if not rest or rest[0] == "revision":
                revision = rest[1] if len(rest) > 1 else "main"
                sha, files = self._snapshot(repo_id, revision, head_only)
                if sha is not None:
                    self._json(
                        200,
                        {
                            "id": repo_id,
                            "modelId": repo_id,
                            "sha": sha,
                            "private": self.hub.repos[repo_id].private,
                            "siblings": [{"rfilename": f} for f in sorted(files)],
                        },
                        head_only,
                    )
                return None
            if rest[0] == "tree" and len(rest) >= 2:
                sha, files = self._snapshot(repo_id, rest[1], head_only)
                if sha is not None:
                    self._json(
                        200,
                        [
                            {
                                "type": "file",
                                "path": f,
                                "size": len(b),
                                "oid": hashlib.sha1(b).hexdigest(),
                            }
                            for f, b in sorted(files.items())
                        ],
                        head_only,
                    )
                return None
        return self._error("EntryNotFound", f"no route {self.path}", head_only=head_only)

    def _resolve(self, repo_id: str, revision: str, path: str, head_only: bool) -> None:
        sha, files = self._snapshot(repo_id, revision, head_only)
        if sha is None:
            return
        if path not in files:  # the Hub names the commit it looked in (the client caches that)
            return self._error(
                "EntryNotFound",
                f"{path} does not exist at {revision}",
                head_only=head_only,
                headers={"X-Repo-Commit": sha},
            )
        data = files[path]
        headers = {
            "X-Repo-Commit": sha,
            "ETag": f'"{hashlib.sha256(data).hexdigest()}"',
            "Content-Type": "application/octet-stream",
            "Accept-Ranges": "bytes",
        }
        status, start = 200, 0
        rng = self.headers.get("Range", "")
        if rng.startswith("bytes=") and rng[6:].split("-")[0].isdigit():
            start = int(rng[6:].split("-")[0])
            status = 206
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        cut = self.hub.truncate_after
        if cut is not None and not head_only:  # announce the whole file, send a few bytes, hang up
            headers["Content-Length"] = str(len(data) - start)
            self._send(status, data[start : start + cut], headers)
            self.wfile.flush()
            self.close_connection = True
            return None
        self._send(status, data[start:], headers, head_only)

    # -- POST (uploads)
    def do_POST(self) -> None:
        self.hub.requests.append((self.command, self.path))
        self.hub.user_agents.append(self.headers.get("User-Agent", ""))
        p, _ = self._route()
        body = self._body()
        if p == ["api", "repos", "create"]:
            req = json.loads(body)
            repo_id = f"{req.get('organization')}/{req['name']}"
            if repo_id in self.hub.repos:  # the Hub's 409 names the repo's url, as a 200 does
                return self._json(
                    409,
                    {
                        "error": "You already created this model repo",
                        "url": f"{self.hub.url}/{repo_id}",
                    },
                )
            self.hub.commit(
                repo_id, {".gitattributes": b"*.safetensors filter=lfs\n"}, message="init"
            )
            self.hub.repos[repo_id].private = req.get("visibility") == "private"
            return self._json(200, {"url": f"{self.hub.url}/{repo_id}", "name": repo_id})
        if p == ["api", "validate-yaml"]:
            return self._json(200, {"errors": [], "warnings": []})
        if len(p) >= 6 and p[:2] == ["api", "models"]:
            repo_id, action, revision = f"{p[2]}/{p[3]}", p[4], "/".join(p[5:])
            repo = self._repo(repo_id)
            if repo is None:
                return None
            if action == "branch":
                if revision in repo.refs:
                    return self._error("BranchExists", "Reference already exists", status=409)
                start = json.loads(body or b"{}").get("startingPoint") or "main"
                repo.refs[revision] = repo.resolve(start)
                return self._json(200, {})
            if action == "preupload":
                files = json.loads(body)["files"]
                return self._json(
                    200,
                    {
                        "files": [
                            {
                                "path": f["path"],
                                "uploadMode": "regular",
                                "shouldIgnore": False,
                                "oid": None,
                            }
                            for f in files
                        ]
                    },
                )
            if action == "commit":
                return self._commit(repo_id, repo, revision, body)
        return self._error("EntryNotFound", f"no route {self.path}")

    # -- PUT (settings)
    def do_PUT(self) -> None:
        self.hub.requests.append((self.command, self.path))
        p, _ = self._route()
        body = self._body()
        if len(p) == 5 and p[:2] == ["api", "models"] and p[4] == "settings":
            repo = self._repo(f"{p[2]}/{p[3]}")
            if repo is None:
                return None
            visibility = json.loads(body).get("visibility")
            if visibility is not None:
                repo.private = visibility == "private"
            return self._json(200, {})
        return self._error("EntryNotFound", f"no route {self.path}")

    def _commit(self, repo_id: str, repo: Repo, revision: str, body: bytes) -> None:
        if revision not in repo.refs:
            return self._error("RevisionNotFound", f"Invalid rev id: {revision}")
        files, message = {}, "commit"
        for line in body.splitlines():
            item = json.loads(line)
            if item["key"] == "header":
                message = item["value"].get("summary", message)
            elif item["key"] == "file" and item["value"].get("encoding") == "base64":
                files[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
            else:
                return self._error(
                    "BadRequest", f"unsupported commit entry {item['key']}", status=400
                )
        sha = self.hub.commit(repo_id, files, branch=revision, message=message)
        self._json(
            200,
            {
                "commitUrl": f"{self.hub.url}/{repo_id}/commit/{sha}",
                "commitOid": sha,
                "pullRequestUrl": None,
            },
        )


class SilentServer:
    """Accepts TCP connections on 127.0.0.1 and never answers (a hung Hub or proxy).

    After ``give_up_after`` seconds it closes every connection and stops listening, so that a
    client which would wait minutes fails within a test's patience instead.
    """

    def __init__(self, give_up_after: float = 20.0) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.1)
        self._deadline = time.monotonic() + give_up_after
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self.connections = 0

    def _accept(self) -> None:
        while not self._stop.is_set() and time.monotonic() < self._deadline:
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            self._held.append(conn)  # read nothing, answer nothing
            self.connections += 1
        self._close()

    def _close(self) -> None:
        for conn in self._held:
            conn.close()
        self._sock.close()

    @property
    def url(self) -> str:
        host, port = self._sock.getsockname()[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> SilentServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
