"""Image configs and manifests for images made here (`build`, `commit`).

An image config is a JSON document whose sha256 is the image id, so it is
serialised one way only (sorted keys, no spaces): the same content gives the
same id. Times are RFC 3339 in UTC; with SOURCE_DATE_EPOCH they are that
instant, which makes whole builds reproducible.
"""

from __future__ import annotations

import copy
import json
import time
from typing import Any

from layers.layerwrite import LayerBlob

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"


def canonical_json(obj: Any) -> bytes:
    """The one serialisation of a config or manifest (its digest must not vary)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def rfc3339(epoch: float | None = None) -> str:
    """`2024-01-02T03:04:05Z` for `epoch` (now when None); whole seconds when given."""
    if epoch is None:
        t = time.time()
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e9):09d}Z"
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def empty_config(os_name: str = "linux", arch: str = "amd64", variant: str | None = None) -> dict[str, Any]:
    """The config of `FROM scratch`: no layers, no settings."""
    cfg: dict[str, Any] = {
        "architecture": arch,
        "os": os_name,
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": []},
        "history": [],
    }
    if variant:
        cfg["variant"] = variant
    return cfg


def add_history(
    config: dict[str, Any],
    created_by: str,
    created: str,
    layer: LayerBlob | None = None,
    comment: str | None = None,
) -> dict[str, Any]:
    """A copy of `config` with one more history entry (and the layer's diff_id, if any)."""
    cfg = copy.deepcopy(config)
    rootfs = cfg.setdefault("rootfs", {"type": "layers", "diff_ids": []})
    rootfs.setdefault("type", "layers")
    rootfs.setdefault("diff_ids", [])
    entry: dict[str, Any] = {"created": created, "created_by": created_by}
    if comment:
        entry["comment"] = comment
    if layer is None:
        entry["empty_layer"] = True
    else:
        rootfs["diff_ids"].append(layer.diff_id)
    cfg.setdefault("history", []).append(entry)
    cfg["created"] = created
    return cfg


def manifest(config: bytes, layers: list[dict[str, Any]], docker: bool = False,
             annotations: dict[str, str] | None = None) -> bytes:
    """The image manifest for a serialised config and its layer descriptors (in order)."""
    import hashlib

    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST if docker else OCI_MANIFEST,
        "config": {
            "mediaType": DOCKER_CONFIG if docker else OCI_CONFIG,
            "digest": "sha256:" + hashlib.sha256(config).hexdigest(),
            "size": len(config),
        },
        "layers": layers,
    }
    if annotations and not docker:
        doc["annotations"] = dict(annotations)
    return canonical_json(doc)
