"""Writing a docker-archive (the tarball of `docker save`, read back by registry.archive).

Layout, as docker 25 writes it and every `docker load` and skopeo reads it:

    blobs/sha256/<config hex>    the image config (its digest is the image id)
    blobs/sha256/<diff_id hex>   each layer as an uncompressed tar (docker's choice)
    manifest.json                [{"Config", "RepoTags", "Layers"}] per image
    repositories                 {"name": {"tag": "<top layer diff_id hex>"}} (old loaders)

A layer stored compressed is decompressed into a temporary file first (a tar member's
size goes in its header), and its diff_id is checked against the config on the way.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from ocirun.errors import OcirunError
from registry.archive_write import SaveImage, TarOut, blob_name
from registry.compression import LayerReader, detect

_CHUNK = 1 << 20


def _familiar_tag(name: str) -> str:
    """docker writes RepoTags short: `busybox:1`, `user/x:2`, `host:5000/x:3`."""
    for prefix in ("docker.io/library/", "docker.io/"):
        if name.startswith(prefix):
            return name[len(prefix):]
    return name


def _add_layer(out: TarOut, blob: Path, diff_id: str, tmp_dir: Path) -> None:
    """The layer as an uncompressed tar named by its diff_id."""
    name = blob_name(diff_id)
    if name in out.names:
        return
    with open(blob, "rb") as f:
        if detect(f.read(8)) == "tar":
            out.add_file(name, blob)
            return
    fd, tmp = tempfile.mkstemp(prefix="save-layer-", dir=tmp_dir)
    try:
        with open(blob, "rb") as src, os.fdopen(fd, "wb") as dst:
            reader = LayerReader(src)
            while chunk := reader.read(_CHUNK):
                dst.write(chunk)
            reader.drain()
        if reader.diff_id != diff_id:
            raise OcirunError(f"layer {blob.name[:12]} does not match its diff_id {diff_id} (the store is damaged)")
        out.add_file(name, tmp)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def write_docker_archive(images: list[SaveImage], out: TarOut, blob_path: Callable[[str], Path], tmp_dir: Path) -> None:
    """Every image's config and layers, then manifest.json and repositories."""
    manifest, repositories = [], {}
    for img in images:
        if len(img.diff_ids) != len(img.layers):
            raise OcirunError(f"image {img.config_digest}: {len(img.layers)} layers but {len(img.diff_ids)} diff_ids")
        out.add_bytes(blob_name(img.config_digest), img.config)
        for desc, diff_id in zip(img.layers, img.diff_ids, strict=True):
            _add_layer(out, blob_path(desc.digest), diff_id, tmp_dir)
        tags = [_familiar_tag(n) for n in img.names]
        manifest.append({
            "Config": blob_name(img.config_digest),
            "RepoTags": tags or None,
            "Layers": [blob_name(d) for d in img.diff_ids],
        })
        for t in tags:
            repo, _, tag = t.rpartition(":")
            if img.diff_ids:
                repositories.setdefault(repo, {})[tag] = img.diff_ids[-1].partition(":")[2]
    out.add_bytes("manifest.json", json.dumps(manifest, separators=(",", ":")).encode() + b"\n")
    if repositories:
        out.add_bytes("repositories", json.dumps(repositories, separators=(",", ":")).encode() + b"\n")
