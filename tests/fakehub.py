"""A local folder served as a Hugging Face Hub model repository, for offline download tests.

Only what ``huggingface_hub`` (2.4) reads when it downloads a model without Xet storage:

* ``GET /api/models/{repo}`` and ``/api/models/{repo}/revision/{rev}`` (``model_info``,
  ``repo_info``): JSON with ``id``, ``sha`` and ``siblings`` (``rfilename``);
* ``GET /api/models/{repo}/tree/{rev}`` (``list_repo_tree``, used by ``snapshot_download``):
  a single page (no ``Link`` header) of ``{"type": "file", "path", "size", "oid"}``;
* ``HEAD``/``GET /{repo}/resolve/{rev}/{file}`` (``hf_hub_download``): the file with
  ``X-Repo-Commit``, ``ETag`` (the git blob sha1) and ``Content-Length``, no redirect and no
  ``X-Xet-*`` headers, so the client downloads over plain HTTP.

``rev`` is ``main`` or the fixed fake commit ``SHA``. Errors carry the ``X-Error-Code`` that
``huggingface_hub.utils.hf_raise_for_status`` maps to exceptions: ``RepoNotFound`` (any other
repo or path), ``RevisionNotFound`` and ``EntryNotFound``. Point a client at the server with
``hub_env``, in a child process: ``huggingface_hub`` reads ``HF_ENDPOINT`` once, at import.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

SHA = "c0ffee0123456789abcdef0123456789abcdef01"  # the repo's one commit


@dataclass
class FakeHub:
    endpoint: str  # http://127.0.0.1:PORT, for HF_ENDPOINT
    requests: list[str] = field(default_factory=list)  # "GET /path", query string dropped


def hub_env(endpoint: str, cache_dir: Path) -> dict[str, str]:
    """Environment for a child process that must use ``endpoint`` and ``cache_dir`` only."""
    # No inherited hub settings (offline mode, tokens, endpoint, cache) and no proxy.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.upper().endswith("_PROXY")
        and not k.startswith(("HF_", "HUGGING_FACE_", "HUGGINGFACE_", "TRANSFORMERS_"))
    }
    env.update(
        HF_ENDPOINT=endpoint,
        HF_HUB_CACHE=str(cache_dir),
        HF_HOME=str(cache_dir / "home"),
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_XET="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        HF_HUB_ETAG_TIMEOUT="5",
        HF_HUB_DOWNLOAD_TIMEOUT="5",
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
    )
    return env


def _git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _handler(repo_id: str, folder: Path, log: list[str]) -> type[BaseHTTPRequestHandler]:
    files = {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*")) if p.is_file()}
    oids = {name: _git_blob_sha1(path.read_bytes()) for name, path in files.items()}
    api = f"/api/models/{repo_id}"

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as httpx expects; every reply has a length

        def do_GET(self) -> None:
            path = unquote(urlsplit(self.path).path)
            log.append(f"{self.command} {path}")
            if path == api:
                return self._json(self._info())
            for prefix, route in (
                (api + "/revision/", self._info),
                (api + "/tree/", self._tree),
                (f"/{repo_id}/resolve/", None),
            ):
                if path.startswith(prefix):
                    rev, _, rest = path[len(prefix) :].partition("/")
                    if rev not in ("main", SHA):
                        return self._error("RevisionNotFound", f"Invalid rev id: {rev}")
                    return self._json(route()) if route else self._file(rest)
            return self._error("RepoNotFound", "Repository not found")

        do_HEAD = do_GET  # same headers; _send leaves the body out

        def log_message(self, format: str, *args: object) -> None:  # no stderr noise
            pass

        def _info(self) -> dict:
            siblings = [{"rfilename": name} for name in files]
            return {"id": repo_id, "modelId": repo_id, "sha": SHA, "siblings": siblings}

        def _tree(self) -> list[dict]:
            return [
                {"type": "file", "path": name, "size": path.stat().st_size, "oid": oids[name]}
                for name, path in files.items()
            ]

        def _file(self, name: str) -> None:
            if name not in files:
                return self._error("EntryNotFound", f"{name} does not exist on main")
            headers = {"ETag": f'"{oids[name]}"', "X-Repo-Commit": SHA}
            self._send(200, files[name].read_bytes(), "application/octet-stream", headers)

        def _json(self, obj: object) -> None:
            self._send(200, json.dumps(obj).encode(), "application/json", {"X-Repo-Commit": SHA})

        def _error(self, code: str, message: str) -> None:
            headers = {"X-Error-Code": code, "X-Error-Message": message}
            self._send(404, json.dumps({"error": message}).encode(), "application/json", headers)

        def _send(self, status: int, body: bytes, ctype: str, headers: dict[str, str]) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

    return Handler


@contextmanager
def serve_repo(repo_id: str, folder: Path) -> Iterator[FakeHub]:
    """Serve ``folder`` as model repo ``repo_id`` on 127.0.0.1 (a free port) while in the block."""
    hub = FakeHub(endpoint="")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(repo_id, Path(folder), hub.requests))
    server.daemon_threads = True
    hub.endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="fakehub", daemon=True)
    thread.start()
    try:
        yield hub
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
