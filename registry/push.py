"""`push_image`: upload one stored image to a registry (OCI distribution spec, push side).

For each blob (layers, then the config): HEAD says whether the repository already
has it; else a cross-repository mount is tried from repositories of the same
registry the image came from (POST ?mount=&from=; the registry answers 201, or 202
with an ordinary upload session when it cannot mount); else the blob is uploaded:
monolithic (POST, then PUT ?digest= with the whole blob) when it is smaller than the
chunk size (`OCIRUN_PUSH_CHUNK_SIZE`, default 64 MiB), chunked otherwise (PATCH with
Content-Range per chunk, then PUT ?digest=). The manifest goes last, byte for byte
as stored, so its digest does not change. Blobs are streamed from the store, several
at a time (`OCIRUN_MAX_CONCURRENT_UPLOADS`, default 5, as docker).
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO, Protocol
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import requests

from ocirun.errors import OcirunError
from registry.client import CHUNK, RegistryClient, RetryPolicy, registry_message
from registry.config import RegistryConfig
from registry.progress import Progress
from registry.reference import Reference
from registry.types import Descriptor
from registry.workers import Cancelled, run_parallel

DEFAULT_CHUNK = 64 << 20
OCTET = "application/octet-stream"
EXISTS, PUSHED = "Layer already exists", "Pushed"


class BlobSource(Protocol):
    """Where the blobs to push are read from (layers.blobs.BlobStore is one)."""

    def open(self, digest: str) -> BinaryIO: ...

    def has(self, digest: str) -> bool: ...


@dataclass(frozen=True)
class LocalImage:
    """What to push: the manifest as stored, and the blobs it names."""

    manifest: bytes
    media_type: str
    config: Descriptor
    layers: list[Descriptor]
    # blob digest -> repositories of the target registry that may hold it (mount sources)
    mount_from: dict[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass
class PushResult:
    digest: str  # the manifest's
    size: int
    statuses: dict[str, str] = field(default_factory=dict)  # blob digest -> Pushed / Layer already exists / Mounted from R


class _Slice:
    """Part of a stored blob as a request body: sized (Content-Length), read in 1 MiB pieces."""

    def __init__(self, blobs: BlobSource, digest: str, offset: int, length: int, on_bytes: Callable[[int], None]):
        self.blobs, self.digest, self.offset, self.length, self.on_bytes = blobs, digest, offset, length, on_bytes

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[bytes]:
        left = self.length
        with self.blobs.open(self.digest) as f:
            f.seek(self.offset)
            while left > 0:
                chunk = f.read(min(CHUNK, left))
                if not chunk:
                    raise OcirunError(f"blob {self.digest} in the store is shorter than its manifest says")
                left -= len(chunk)
                self.on_bytes(len(chunk))
                yield chunk


def _with_query(location: str, **params: str) -> str:
    """An upload URL (which may carry the registry's own state) plus our parameters."""
    parts = urlsplit(location)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


class _Uploader:
    """Blob uploads into one repository."""

    def __init__(self, client: RegistryClient, repo: str, blobs: BlobSource, board: Progress, chunk: int):
        self.client, self.repo, self.blobs, self.board, self.chunk = client, repo, blobs, board, chunk
        self.stop = threading.Event()  # another upload failed, or Ctrl-C: end this one
        self.scope = f"repository:{repo}:pull,push"
        self.display = f"{client.registry}/{repo}"

    def _request(self, method: str, url: str, what: str, ok: tuple[int, ...], **kw) -> requests.Response:
        resp = self.client.request(method, url, scope=kw.pop("scope", self.scope), **kw)
        resp.close()
        if resp.status_code not in ok:
            raise refused(resp, f"push of {what} to {self.display}")
        return resp

    def _location(self, resp: requests.Response) -> str:
        loc = resp.headers.get("Location")
        if not loc:
            raise OcirunError(f"registry {self.client.host} started an upload without a Location")
        return urljoin(self.client.base_url + "/", loc)

    def push(self, desc: Descriptor, mount_from: tuple[str, ...]) -> str:
        """Make `desc` present in the repository; returns how (docker's words)."""
        what = f"blob {desc.digest}"
        if self._request("HEAD", f"{self.repo}/blobs/{desc.digest}", what, (200, 404)).status_code == 200:
            return EXISTS
        if not self.blobs.has(desc.digest):
            raise OcirunError(f"{what} is not in the store (pull the image again)")
        location = None
        for src in mount_from:
            resp = self._request("POST", f"{self.repo}/blobs/uploads/?mount={desc.digest}&from={src}", what,
                                 (201, 202), scope=f"{self.scope} repository:{src}:pull")
            if resp.status_code == 201:
                return f"Mounted from {src}"
            location = self._location(resp)  # not mounted: an ordinary upload was started
            break
        if location is None:
            location = self._location(self._request("POST", f"{self.repo}/blobs/uploads/", what, (202,)))
        self.board.start(desc.digest, 0, "Pushing")
        if desc.size < self.chunk:
            self._monolithic(location, desc, what)
        else:
            self._chunked(location, desc, what)
        return PUSHED

    def _body(self, desc: Descriptor, offset: int, length: int) -> Callable[[], _Slice | bytes]:
        def make() -> _Slice | bytes:
            if length == 0:
                return b""
            self.board.start(desc.digest, offset, "Pushing")  # again when the request is retried
            return _Slice(self.blobs, desc.digest, offset, length, lambda n: self._advance(desc.digest, n))

        return make

    def _advance(self, digest: str, n: int) -> None:
        if self.stop.is_set():
            raise Cancelled()
        self.board.advance(digest, n)

    def _monolithic(self, location: str, desc: Descriptor, what: str) -> None:
        self._request("PUT", _with_query(location, digest=desc.digest), what, (201,),
                      headers={"Content-Type": OCTET}, body=self._body(desc, 0, desc.size))

    def _chunked(self, location: str, desc: Descriptor, what: str) -> None:
        offset = 0
        while offset < desc.size:
            n = min(self.chunk, desc.size - offset)
            resp = self._request("PATCH", location, what, (202,), body=self._body(desc, offset, n),
                                 headers={"Content-Type": OCTET, "Content-Range": f"{offset}-{offset + n - 1}"})
            location = self._location(resp)
            offset += n
        self._request("PUT", _with_query(location, digest=desc.digest), what, (201,), body=b"")


def refused(resp: requests.Response, what: str) -> OcirunError:
    """What the registry said when it refused a request, in one line."""
    msg = registry_message(resp)
    if not msg and resp.headers.get("Content-Type", "").startswith("text/plain"):
        msg = (resp.text.strip().splitlines() or [""])[0][:200]
    if resp.status_code == 403 and not msg:
        msg = "denied: requested access to the resource is denied"
    return OcirunError(f"{what} refused: HTTP {resp.status_code}" + (f": {msg}" if msg else ""))


def _upload_all(up: _Uploader, blobs: list[Descriptor], mount_from: dict[str, tuple[str, ...]], workers: int,
                on_done: Callable[[Descriptor, str], None]) -> dict[str, str]:
    """Push blobs in a thread pool; the first failure stops the others at their next chunk."""
    statuses: dict[str, str] = {}

    def one(d: Descriptor) -> None:
        if up.stop.is_set():
            return
        statuses[d.digest] = up.push(d, mount_from.get(d.digest, ()))
        on_done(d, statuses[d.digest])

    run_parallel(blobs, one, workers, up.stop)
    return statuses


def push_image(
    image: LocalImage,
    ref: Reference,
    blobs: BlobSource,
    *,
    progress: bool | None = None,
    on_layer: Callable[[Descriptor, str], None] | None = None,
    config: RegistryConfig | None = None,
    retry: RetryPolicy | None = None,
) -> PushResult:
    """Upload `image` as `ref` (a tag); `on_layer(desc, status)` hears of each finished layer."""
    client = RegistryClient(ref.registry, config=config or RegistryConfig.load(), retry=retry)
    board = Progress(progress)
    chunk = max(1, int(os.environ.get("OCIRUN_PUSH_CHUNK_SIZE", DEFAULT_CHUNK)))
    workers = int(os.environ.get("OCIRUN_MAX_CONCURRENT_UPLOADS", "5"))
    up = _Uploader(client, ref.repository, blobs, board, chunk)
    layers = list({d.digest: d for d in image.layers}.values())

    def done(d: Descriptor, status: str) -> None:
        if d is image.config:
            return  # the config has no line of its own, as in docker's output
        board.finish(d.digest, PUSHED if status == PUSHED else status)
        if on_layer:
            on_layer(d, status)

    for d in layers:
        board.add(d.digest, d.size, "Preparing")
    # the config goes with the layers (the registry only needs it before the manifest)
    statuses = _upload_all(up, layers + [image.config], image.mount_from, workers, done)
    board.close()
    tag = ref.tag or "latest"
    resp = client.request("PUT", f"{ref.repository}/manifests/{tag}", scope=up.scope,
                          headers={"Content-Type": image.media_type}, body=image.manifest)
    resp.close()
    if resp.status_code not in (200, 201):
        raise refused(resp, f"push of the manifest to {up.display}:{tag}")
    digest = "sha256:" + hashlib.sha256(image.manifest).hexdigest()
    return PushResult(digest, len(image.manifest), statuses)
