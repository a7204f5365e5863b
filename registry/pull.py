"""`pull_image`: resolve a reference to one platform's image and fill a BlobSink with it.

Every blob (manifest, config, layers) ends up in the sink content-addressed and
verified; layers are fetched several at a time (`OCIRUN_MAX_CONCURRENT_DOWNLOADS`,
default 4). Archive references (`docker-archive:`, `oci:`, `oci-archive:`) go to
registry.archive through the same entry point.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

from ocirun.errors import OcirunError
from registry.archive import pull_archive
from registry.client import RegistryClient, RetryPolicy
from registry.config import RegistryConfig
from registry.manifest import check_platform, choose_manifest, read_config, store_bytes
from registry.platform import Platform, host_platform
from registry.progress import Progress
from registry.reference import ArchiveReference, Reference, parse_reference
from registry.types import (
    INDEX_TYPES,
    BlobSink,
    Descriptor,
    PulledImage,
    parse_manifest,
)
from registry.workers import Cancelled, run_parallel


def pull_image(
    ref: str | Reference | ArchiveReference,
    platform: Platform | None,
    sink: BlobSink,
    *,
    progress: bool | None = None,
    config: RegistryConfig | None = None,
    retry: RetryPolicy | None = None,
    max_workers: int | None = None,
) -> PulledImage:
    """Pull one platform's image into `sink`.

    `platform=None` means the host's platform for a multi-platform image, and whatever
    a single-platform image is (so a foreign image can still run under QEMU); an
    explicit platform that a single-platform image does not match is an error.
    `progress=None` shows per-layer progress only when stderr is a terminal.
    """
    config = config or RegistryConfig.load()
    if isinstance(ref, str):
        ref = parse_reference(ref, config)
    if isinstance(ref, ArchiveReference):
        return pull_archive(ref, platform, sink)
    board = Progress(progress)
    client, data, media_type, digest = _resolve(ref, config, retry)
    repo_digest = digest
    display = ref.familiar
    wanted = platform or host_platform()
    if media_type in INDEX_TYPES:
        data, media_type, digest = _platform_manifest(client, ref, data, digest, wanted, sink)
    manifest = parse_manifest(data, f"manifest for {display}")
    store_bytes(sink, digest, data)

    def fetch_config(desc: Descriptor) -> bytes:
        board.message(f"Pulling {display}")
        return _config_blob(client, ref.repository, desc, sink)

    cfg = read_config(manifest, display, fetch_config)
    if platform is not None and repo_digest == digest:  # a single-platform image
        check_platform(wanted, cfg.platform, display)
    _fetch_layers(client, ref.repository, cfg.layers, sink, board, max_workers)
    board.close()
    return PulledImage(
        name=ref.name,
        tag=ref.tag,
        repo_digest=repo_digest,
        manifest_digest=digest,
        manifest=data,
        manifest_media_type=media_type,
        config_digest=cfg.desc.digest,
        config=cfg.data,
        config_json=cfg.json,
        layers=cfg.layers,
        platform=cfg.platform,
    )


def _platform_manifest(client: RegistryClient, ref: Reference, index_data: bytes, index_digest: str,
                       wanted: Platform, sink: BlobSink) -> tuple[bytes, str, str]:
    """The manifest (data, media type, digest) of the `wanted` platform in an image index."""
    display = ref.familiar
    index = parse_manifest(index_data, f"index for {display}")
    store_bytes(sink, index_digest, index_data)
    chosen = choose_manifest(index, wanted, display)
    data, media_type, digest = client.get_manifest(ref.repository, chosen.digest, display=display)
    if media_type in INDEX_TYPES:
        raise OcirunError(f"manifest for {display}: nested index is not supported")
    return data, media_type, digest


def _config_blob(client: RegistryClient, repo: str, desc: Descriptor, sink: BlobSink) -> bytes:
    """The image config: from the sink when it is there (and intact), else fetched and stored."""
    data = _read_blob(sink, desc.digest)
    if data is None:
        data = client.fetch_small(repo, desc)
        store_bytes(sink, desc.digest, data)
    return data


def _resolve(ref: Reference, config: RegistryConfig, retry: RetryPolicy | None) -> tuple[RegistryClient, bytes, str, str]:
    """Fetch the top manifest, trying Docker Hub mirrors first; returns the client that answered."""
    endpoints = config.endpoints(ref.registry)
    errors: list[str] = []
    for i, base in enumerate(endpoints):
        mirror = i < len(endpoints) - 1
        client = RegistryClient(ref.registry, config=config, base_url=base if mirror else None, retry=retry)
        try:
            data, media_type, digest = client.get_manifest(ref.repository, ref.ref, display=ref.familiar)
        except OcirunError as exc:
            if not mirror:
                raise
            errors.append(f"{base}: {exc.message}")
            continue
        return client, data, media_type, digest
    raise OcirunError("; ".join(errors))  # not reached: the last endpoint raises


def _read_blob(sink: BlobSink, digest: str) -> bytes | None:
    """A stored blob's bytes if the sink can give its path (`sink.path(digest)`), else None.

    BlobSink has no read method; a sink that offers `path()` saves a request on a
    cached pull. What comes back is checked again: the store is not trusted blindly.
    """
    path = getattr(sink, "path", None)
    if not callable(path) or not sink.has(digest):
        return None
    try:
        data = Path(path(digest)).read_bytes()
    except OSError:
        return None
    return data if "sha256:" + hashlib.sha256(data).hexdigest() == digest else None


def _fetch_layers(client: RegistryClient, repo: str, layers: list[Descriptor], sink: BlobSink, board: Progress, max_workers: int | None) -> None:
    """Download missing layers in a thread pool; the first failure wins."""
    todo = []
    for d in layers:
        if sink.has(d.digest):
            board.add(d.digest, d.size, "Already exists")
        elif d not in todo:
            board.add(d.digest, d.size)
            todo.append(d)
    if not todo:
        return
    workers = max_workers or int(os.environ.get("OCIRUN_MAX_CONCURRENT_DOWNLOADS", "4"))
    stop = threading.Event()  # set on the first failure or Ctrl-C: other downloads end at their next chunk

    def advance(d: Descriptor, n: int) -> None:
        if stop.is_set():
            raise Cancelled()
        board.advance(d.digest, n)

    def one(d: Descriptor) -> None:
        if stop.is_set():
            return
        client.fetch_blob(
            repo,
            d,
            sink,
            on_start=lambda off: board.start(d.digest, off),
            on_bytes=lambda n: advance(d, n),
        )
        board.finish(d.digest)

    run_parallel(todo, one, workers, stop)
