"""Types shared by the registry client and the image store that consumes it.

The image store (`layers/blobs.py`) implements `BlobSink`; `registry.pull.pull_image`
fills it with verified blobs and returns a `PulledImage` describing what it stored.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from registry.platform import Platform

# Media types, as data: which are manifests, which are indexes.
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER_TAR = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+prettyjws"
DOCKER_SCHEMA1_PLAIN = "application/vnd.docker.distribution.manifest.v1+json"

DIGEST_RE = re.compile(r"^sha256:[a-f0-9]{64}$|^sha512:[a-f0-9]{128}$")

INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})
MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
# Accept header for manifest requests: every type we can read, most wanted first.
MANIFEST_ACCEPT = ", ".join([OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST])


@runtime_checkable
class BlobSink(Protocol):
    """Content-addressed blob store the pull writes into (implemented by layers/blobs.py)."""

    def has(self, digest: str) -> bool:
        """True when a verified blob with this digest is already stored."""
        ...

    def partial_path(self, digest: str) -> Path:
        """Stable temporary file for a resumable download, on the store's filesystem."""
        ...

    def commit(self, digest: str, partial: Path) -> Path:
        """Atomically rename a VERIFIED partial into the store; return the final path."""
        ...

    def lock(self, digest: str) -> AbstractContextManager[Any]:
        """Exclusive per-blob lock (two processes pulling the same blob)."""
        ...


@dataclass(frozen=True)
class Descriptor:
    """An OCI content descriptor (a manifest's reference to a blob or a manifest)."""

    media_type: str
    digest: str
    size: int
    platform: Platform | None = None
    annotations: dict[str, str] = field(default_factory=dict)
    urls: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Descriptor:
        """Parse a descriptor; a malformed one (hostile manifest) is an OcirunError."""
        from ocirun.errors import OcirunError

        if not isinstance(d, dict):
            raise OcirunError("malformed descriptor: not a JSON object")
        digest, size = d.get("digest"), d.get("size", -1)
        if not isinstance(digest, str) or not DIGEST_RE.match(digest):
            raise OcirunError(f"malformed descriptor: bad digest {digest!r}")
        if isinstance(size, bool) or not isinstance(size, int) or size < -1:
            raise OcirunError(f"malformed descriptor for {digest}: bad size {size!r}")
        plat = d.get("platform")
        return cls(
            media_type=str(d.get("mediaType", "")),
            digest=digest,
            size=size,
            platform=Platform.from_json(plat) if isinstance(plat, dict) else None,
            annotations=dict(d.get("annotations") or {}),
            urls=tuple(d.get("urls") or ()),
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.platform is not None:
            out["platform"] = self.platform.to_json()
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.urls:
            out["urls"] = list(self.urls)
        return out


@dataclass
class PulledImage:
    """What a pull (or an archive load) stored in the sink, for the image store to record.

    `name` is the canonical repository (`docker.io/library/debian`); `tag` may be None
    (pulled by digest, or an archive image without a name). `repo_digest` is the digest
    the reference resolved to first (the index's for a multi-platform image), as docker
    shows in RepoDigests; `manifest_digest` is the platform manifest's.
    """

    name: str | None
    tag: str | None
    repo_digest: str
    manifest_digest: str
    manifest: bytes
    manifest_media_type: str
    config_digest: str
    config: bytes
    config_json: dict[str, Any]
    layers: list[Descriptor]
    platform: Platform
    source: str = "registry"  # registry | docker-archive | oci | oci-archive

    @property
    def reference(self) -> str | None:
        """`name:tag` (or `name@digest`), what `ocirun images` lists."""
        if self.name is None:
            return None
        return f"{self.name}:{self.tag}" if self.tag else f"{self.name}@{self.repo_digest}"

    @property
    def image_id(self) -> str:
        """Docker's image id: the config digest."""
        return self.config_digest

    def diff_ids(self) -> list[str]:
        """Uncompressed layer digests from the config (rootfs.diff_ids)."""
        return list((self.config_json.get("rootfs") or {}).get("diff_ids") or [])


def parse_json_object(data: bytes, what: str) -> dict[str, Any]:
    """Decode a JSON object or raise OcirunError naming `what`."""
    from ocirun.errors import OcirunError

    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise OcirunError(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise OcirunError(f"{what} is not a JSON object")
    return obj


def parse_manifest(data: bytes, what: str, context: str = "") -> dict[str, Any]:
    """Decode an image manifest or index and validate it against oras-py's JSON schemas.

    oras-py's schemas (oras.schemas) catch wrong shapes (layers not a list, size not a
    number, index entries without digest); Descriptor.from_json then checks digests and
    sizes strictly. Errors name `what`, a shape error prefixed with `context`.
    """
    import jsonschema
    import oras.schemas

    from ocirun.errors import OcirunError

    obj = parse_json_object(data, what)
    schema = oras.schemas.index if "manifests" in obj else oras.schemas.manifest
    try:
        jsonschema.validate(obj, schema)
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "top level"
        message = exc.message.splitlines()[0][:120]
        raise OcirunError(f"{context}{what} is malformed at {where}: {message}") from None
    return obj


def iter_layers(manifest: dict[str, Any]) -> Iterator[Descriptor]:
    """Layer descriptors of an image manifest, in order."""
    for d in manifest.get("layers") or []:
        yield Descriptor.from_json(d)
