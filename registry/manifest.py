"""Manifests shared by registry pulls and archives: choosing one platform's, storing them.

Both registry.pull (from a registry) and registry.archive (from a file) use these,
so neither imports the other for them.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ocirun.errors import OcirunError
from registry.platform import Platform, describe, select
from registry.types import (
    DOCKER_CONFIG,
    OCI_CONFIG,
    BlobSink,
    Descriptor,
    iter_layers,
    parse_json_object,
)


def store_bytes(sink: BlobSink, digest: str, data: bytes) -> None:
    """Put small in-memory content (manifest, config) into the sink, verified."""
    if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
        raise OcirunError(f"blob {digest} does not match its digest")
    if sink.has(digest):
        return
    with sink.lock(digest):
        if sink.has(digest):
            return
        partial = sink.partial_path(digest)
        partial.parent.mkdir(parents=True, exist_ok=True)
        with open(partial, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        sink.commit(digest, partial)


def check_config_type(config: Descriptor, display: str) -> None:
    """Refuse OCI artifacts (helm charts, signatures...): they are not container images."""
    if config.media_type and config.media_type not in (OCI_CONFIG, DOCKER_CONFIG):
        raise OcirunError(f"{display} is not a container image (config type {config.media_type})")


@dataclass
class ImageConfig:
    """What an image manifest names: its config (descriptor, bytes, parsed) and layers."""

    desc: Descriptor
    data: bytes
    json: dict[str, Any]
    platform: Platform
    layers: list[Descriptor]


def read_config(manifest: dict, display: str, fetch: Callable[[Descriptor], bytes]) -> ImageConfig:
    """The config `manifest` names, got through `fetch` (a registry, an archive), and its
    layers; a manifest that is not a container image's is refused first."""
    desc = Descriptor.from_json(manifest.get("config") or {})
    check_config_type(desc, display)
    layers = list(iter_layers(manifest))
    data = fetch(desc)
    config_json = parse_json_object(data, f"image config {desc.digest}")
    return ImageConfig(desc, data, config_json, Platform.from_json(config_json), layers)


def check_platform(wanted: Platform, found: Platform, display: str) -> None:
    """A single-platform image asked for with an explicit platform must be that platform."""
    if wanted.rank(found) is None:
        raise OcirunError(f"no image for platform {wanted} in {display}; available: {found}")


def is_attestation(desc: Descriptor) -> bool:
    """BuildKit's attestation manifests in an index (platform unknown/unknown)."""
    return (
        desc.annotations.get("vnd.docker.reference.type") == "attestation-manifest"
        or (desc.platform is not None and desc.platform.os == "unknown")
    )


def choose_manifest(index: dict, wanted: Platform, display: str) -> Descriptor:
    """Pick the manifest for `wanted` from an index, or fail listing what there is."""
    entries = [Descriptor.from_json(d) for d in index.get("manifests") or []]
    entries = [e for e in entries if not is_attestation(e)]
    with_plat = [(e.platform, e) for e in entries if e.platform is not None]
    chosen = select(wanted, with_plat)
    if chosen is None:
        if not with_plat and len(entries) == 1:
            return entries[0]  # an index without platform info: its only image
        raise OcirunError(
            f"no image for platform {wanted} in {display}; available: {describe(p for p, _ in with_plat)}"
        )
    return chosen
