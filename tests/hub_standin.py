"""A stand-in for the Hugging Face Hub's HTTP API, serving a local model directory as one repository: the one fake
the tests allow for the Hub (it cannot be reached from these machines). It answers what the real `huggingface_hub`
client asks: `GET /api/models/{repo}[/revision/{rev}]` (siblings with sizes and LFS sha256 with `?blobs=true`) and
`HEAD`/`GET /{repo}/resolve/{rev}/{path}` (X-Repo-Commit, ETag / X-Linked-Etag, X-Linked-Size, Range -> 206).
Faults on demand: `cut_once` drops the connection once part-way through a file (a resume must follow), `corrupt`
serves a file with the right size and wrong bytes, `claimed_size` lists a size the disk cannot hold."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

COMMIT = "0123456789abcdef0123456789abcdef01234567"
LFS_MIN_BYTES = 100_000  # bigger files are LFS objects on the real Hub


@dataclass
class HubState:
    """The repository served and the faults to inject."""

    repo_id: str
    folder: Path
    cut_once: dict[str, int] = field(default_factory=dict)     # path -> bytes sent before the connection drops
    corrupt: set[str] = field(default_factory=set)
    claimed_size: dict[str, int] = field(default_factory=dict)
    delay_per_chunk_s: float = 0.0
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)  # method, path, Range header

    def files(self) -> dict[str, Path]:
        return {str(p.relative_to(self.folder)): p for p in sorted(self.folder.rglob("*")) if p.is_file()}

    def sha256(self, path: Path) -> str:
        return hashlib.sha256(path.read_bytes()).hexdigest()


def _handler(state: HubState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_: object) -> None:
            pass

        def _json(self, body: object, status: int = 200, error_code: str | None = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            if error_code:
                self.send_header("X-Error-Code", error_code)  # what the real Hub names its errors by
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _info(self) -> None:
            siblings = []
            for name, path in state.files().items():
                size = state.claimed_size.get(name, path.stat().st_size)
                entry: dict[str, object] = {"rfilename": name, "size": size,
                                            "blobId": hashlib.sha1(path.read_bytes()).hexdigest()}
                if path.stat().st_size >= LFS_MIN_BYTES:
                    entry["lfs"] = {"sha256": state.sha256(path), "size": size, "pointerSize": 134}
                siblings.append(entry)
            self._json({"id": state.repo_id, "modelId": state.repo_id, "sha": COMMIT, "private": False,
                        "gated": False, "disabled": False, "siblings": siblings, "tags": [], "downloads": 0,
                        "likes": 0, "library_name": "transformers"})

        def _file(self, name: str, head: bool) -> None:
            path = state.files().get(name)
            if path is None:
                self.send_response(404)
                self.send_header("X-Error-Code", "EntryNotFound")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            data = path.read_bytes()
            if name in state.corrupt:
                data = bytes(b ^ 0xFF for b in data[:64]) + data[64:]
            lfs = len(data) >= LFS_MIN_BYTES
            etag = state.sha256(path) if lfs else hashlib.sha1(data).hexdigest()
            start = 0
            ranged = self.headers.get("Range")
            if ranged and ranged.startswith("bytes="):
                start = int(ranged[6:].split("-")[0] or 0)
            self.send_response(206 if start else 200)
            self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("ETag", f'"{etag}"')
            if lfs:
                self.send_header("X-Linked-Etag", f'"{etag}"')
                self.send_header("X-Linked-Size", str(len(data)))
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(len(data) - start))
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.end_headers()
            if head:
                return
            body = data[start:]
            cut = state.cut_once.pop(name, None)
            step = 64 << 10
            for offset in range(0, len(body), step):
                if cut is not None and offset >= cut:
                    self.close_connection = True
                    self.connection.shutdown(2)  # drop it mid-body: the client must resume with a Range request
                    return
                if state.delay_per_chunk_s:
                    threading.Event().wait(state.delay_per_chunk_s)
                self.wfile.write(body[offset:offset + step])

        def _route(self, head: bool) -> None:
            path = unquote(urlparse(self.path).path)
            state.requests.append((self.command, path, self.headers.get("Range")))
            repo = state.repo_id
            if path in (f"/api/models/{repo}", f"/api/models/{repo}/revision/main",
                        f"/api/models/{repo}/revision/{COMMIT}"):
                return self._info()
            for rev in ("main", COMMIT):
                prefix = f"/{repo}/resolve/{rev}/"
                if path.startswith(prefix):
                    return self._file(path[len(prefix):], head)
            self._json({"error": "Repository not found"}, 401, "RepoNotFound")

        def do_GET(self) -> None:
            self._route(head=False)

        def do_HEAD(self) -> None:
            self._route(head=True)

    return Handler


@contextmanager
def hub_standin(repo_id: str, folder: Path) -> Iterator[tuple[str, HubState]]:
    """Serve `folder` as `repo_id` on 127.0.0.1; yields (HF_ENDPOINT, state)."""
    state = HubState(repo_id=repo_id, folder=folder)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()
