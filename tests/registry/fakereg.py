"""A tiny scripted registry (http.server) for what a real one will not do.

Distribution refuses manifests naming missing blobs and never fails on purpose; this
server serves exactly the manifests and blobs it is given, and can be told to answer
with errors first, drop a connection mid-blob, redirect blobs to another server or
demand credentials. Every request is logged (method, path, headers).
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Logged:
    method: str
    path: str
    headers: dict[str, str]


@dataclass
class FakeRegistry:
    """Serve /v2/<repo>/manifests/<ref> and /v2/<repo>/blobs/<digest> from dicts."""

    manifests: dict[str, tuple[bytes, str]] = field(default_factory=dict)  # ref or digest -> (bytes, type)
    blobs: dict[str, bytes] = field(default_factory=dict)
    fail_first: dict[str, list[int | tuple[int, dict[str, str]]]] = field(default_factory=dict)  # path suffix -> statuses
    drop_after: dict[str, int] = field(default_factory=dict)  # digest -> bytes sent before the first drop
    ignore_range: bool = False
    throttle: dict[str, float] = field(default_factory=dict)  # digest -> seconds per 64 KiB sent
    redirect_blobs_to: str | None = None  # base URL of another FakeRegistry
    basic_auth: tuple[str, str] | None = None
    log: list[Logged] = field(default_factory=list)
    active: int = 0  # throttled blob responses being sent right now
    max_active: int = 0

    def __post_init__(self) -> None:
        reg = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                reg._handle(self, body=True)

            def do_HEAD(self) -> None:
                reg._handle(self, body=False)

        self._lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.httpd.server_address[1]}"
        self.url = f"http://{self.host}"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def add_manifest(self, obj: dict[str, Any] | bytes, media_type: str, tag: str | None = None) -> str:
        data = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
        d = digest_of(data)
        self.manifests[d] = (data, media_type)
        if tag:
            self.manifests[tag] = (data, media_type)
        return d

    def add_blob(self, data: bytes) -> dict[str, Any]:
        d = digest_of(data)
        self.blobs[d] = data
        return {"digest": d, "size": len(data)}

    # ------------------------------------------------------------------

    def _send(self, h: BaseHTTPRequestHandler, status: int, body: bytes = b"", headers: dict[str, str] | None = None, send_body: bool = True) -> None:
        h.send_response(status)
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if send_body and body:
            h.wfile.write(body)

    def _error(self, h: BaseHTTPRequestHandler, status: int, code: str, extra: dict[str, str] | None = None) -> None:
        body = json.dumps({"errors": [{"code": code, "message": code.lower().replace("_", " ")}]}).encode()
        self._send(h, status, body, {"Content-Type": "application/json", **(extra or {})})

    def _handle(self, h: BaseHTTPRequestHandler, body: bool) -> None:
        path = h.path.split("?")[0]
        with self._lock:
            self.log.append(Logged(h.command, path, dict(h.headers.items())))
            for suffix, statuses in self.fail_first.items():
                if path.endswith(suffix) and statuses:
                    st = statuses.pop(0)
                    status, extra = st if isinstance(st, tuple) else (st, {})
                    self._error(h, status, "UNAVAILABLE", extra)
                    return
        if self.basic_auth and path.startswith("/v2/"):
            want = "Basic " + base64.b64encode(f"{self.basic_auth[0]}:{self.basic_auth[1]}".encode()).decode()
            if h.headers.get("Authorization") != want:
                self._error(h, 401, "UNAUTHORIZED", {"WWW-Authenticate": 'Basic realm="fake"'})
                return
        if path in ("/v2/", "/v2"):
            self._send(h, 200, b"{}", {"Content-Type": "application/json"}, body)
            return
        if "/manifests/" in path:
            ref = path.rsplit("/manifests/", 1)[1]
            if ref not in self.manifests:
                self._error(h, 404, "MANIFEST_UNKNOWN")
                return
            data, mt = self.manifests[ref]
            self._send(h, 200, data, {"Content-Type": mt, "Docker-Content-Digest": digest_of(data)}, body)
            return
        if "/blobs/" in path:
            digest = path.rsplit("/blobs/", 1)[1]
            if self.redirect_blobs_to:
                self._send(h, 307, b"", {"Location": f"{self.redirect_blobs_to}/storage/{digest}?sig=x"}, body)
                return
            self._serve_blob(h, digest, body)
            return
        if path.startswith("/storage/"):
            self._serve_blob(h, path.rsplit("/", 1)[1], body)
            return
        self._error(h, 404, "NOT_FOUND")

    def _serve_blob(self, h: BaseHTTPRequestHandler, digest: str, body: bool) -> None:
        if digest not in self.blobs:
            self._error(h, 404, "BLOB_UNKNOWN")
            return
        data = self.blobs[digest]
        start = 0
        rng = h.headers.get("Range")
        status, headers = 200, {"Content-Type": "application/octet-stream", "Docker-Content-Digest": digest}
        if rng and not self.ignore_range:
            start = int(rng.split("=")[1].split("-")[0])
            if start >= len(data):
                self._error(h, 416, "RANGE_NOT_SATISFIABLE")
                return
            status = 206
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        payload = data[start:]
        with self._lock:
            cut = self.drop_after.pop(digest, None)
        if cut is not None:
            # Promise everything, send `cut` bytes, then close the connection.
            h.send_response(status)
            for k, v in headers.items():
                h.send_header(k, v)
            h.send_header("Content-Length", str(len(payload)))
            h.end_headers()
            h.wfile.write(payload[:cut])
            h.wfile.flush()
            h.close_connection = True
            return
        delay = self.throttle.get(digest)
        if delay and body:
            h.send_response(status)
            for k, v in headers.items():
                h.send_header(k, v)
            h.send_header("Content-Length", str(len(payload)))
            h.end_headers()
            with self._lock:
                self.active += 1
                self.max_active = max(self.max_active, self.active)
            try:
                for i in range(0, len(payload), 65536):
                    h.wfile.write(payload[i : i + 65536])
                    h.wfile.flush()
                    time.sleep(delay)
            except OSError:
                pass  # the client went away
            finally:
                with self._lock:
                    self.active -= 1
            return
        self._send(h, status, payload, headers, body)
