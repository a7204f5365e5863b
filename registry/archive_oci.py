"""Writing an OCI image layout as a tar (`ocirun save --format oci-archive`).

    oci-layout            {"imageLayoutVersion": "1.0.0"}
    index.json            one entry per image name (or one unnamed entry), pointing at
                          its manifest; `org.opencontainers.image.ref.name` is the tag
                          (what skopeo's `oci-archive:FILE:TAG` selects) and
                          `io.containerd.image.name` the full name (what docker and
                          `ocirun load` use)
    blobs/sha256/<hex>    manifests, configs and layers byte for byte as stored

registry.archive reads it back; manifests are not rewritten, so digests are kept.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from registry.archive_write import SaveImage, TarOut, blob_name
from registry.types import OCI_INDEX

REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"


def _entries(img: SaveImage) -> list[dict]:
    base = {"mediaType": img.media_type, "digest": img.manifest_digest, "size": len(img.manifest)}
    if img.platform:
        base["platform"] = dict(img.platform)
    if not img.names:
        return [base]
    return [{**base, "annotations": {CONTAINERD_NAME: n, REF_NAME: n.rpartition(":")[2]}} for n in img.names]


def write_oci_layout(images: list[SaveImage], out: TarOut, blob_path: Callable[[str], Path]) -> None:
    """Blobs first, then index.json and oci-layout."""
    manifests = []
    for img in images:
        for desc in img.layers:
            out.add_file(blob_name(desc.digest), blob_path(desc.digest))
        out.add_bytes(blob_name(img.config_digest), img.config)
        out.add_bytes(blob_name(img.manifest_digest), img.manifest)
        manifests += _entries(img)
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}
    out.add_bytes("index.json", json.dumps(index, separators=(",", ":")).encode() + b"\n")
    out.add_bytes("oci-layout", b'{"imageLayoutVersion":"1.0.0"}\n')
