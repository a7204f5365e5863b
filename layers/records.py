"""What the image store holds, apart from the Store itself: image records, names as
docker shows them, the record files' names, and what the store asks of the runner."""

from __future__ import annotations

import re
from pathlib import Path

from layers.blobs import parse_digest
from layers.check import Finding
from ocirun.util.records import dataclass, field

TYPE_CHECKING = False  # typing's, without importing typing (start-up time)
if TYPE_CHECKING:
    from typing import Any, Protocol
else:
    Protocol = object  # typing's Protocol matters to type checkers only (start-up time)

META = "meta.json"  # written last: an image without it is not complete
HEXID = re.compile(r"^[0-9a-f]{1,64}$")


def familiar(name: str) -> str:
    """`docker.io/library/busybox:1` -> `busybox:1`, `docker.io/u/x` -> `u/x` (docker's display)."""
    if name.startswith("docker.io/library/"):
        return name[len("docker.io/library/") :]
    if name.startswith("docker.io/"):
        return name[len("docker.io/") :]
    return name


def split_tag(ref: str) -> tuple[str, str]:
    """`host:5000/repo:tag` -> (`host:5000/repo`, `tag`)."""
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > slash:
        return ref[:colon], ref[colon + 1 :]
    return ref, "latest"


def host_platform():
    from registry.platform import host_platform

    return host_platform()


def parse_platform(text: str):
    from registry.platform import Platform

    return Platform.parse(text)


@dataclass
class ImageRecord:
    """One stored image (docker's image: identified by its config digest)."""

    id: str  # sha256:<hex> of the config: docker's image id
    repo_tags: list[str]  # familiar names, `busybox:latest`
    manifest_digest: str
    platform: str  # `linux/amd64`, `linux/arm64/v8`
    config: dict[str, Any]
    rootfs: Path
    size: int
    created: str  # the config's creation time (RFC 3339), '' if absent
    repo_digests: list[str] = field(default_factory=list)
    layers: list[str] = field(default_factory=list)
    path: Path | None = None  # images/<hex>
    pulled: float = 0.0
    source: str = ""  # registry, docker-archive, build, build-cache (a build step's tree)
    store: Path | None = None  # the root of the store it is in (the user's or a site store)

    @property
    def short_id(self) -> str:
        return self.id.split(":", 1)[1][:12]

    @property
    def ownership_path(self) -> Path:
        return self.rootfs.parent / "ownership"


@dataclass
class PruneReport:
    deleted: list[str] = field(default_factory=list)  # image ids
    reclaimed: int = 0
    notes: list[str] = field(default_factory=list)


class ContainerIndex(Protocol):
    """What the image store must know of the containers built on its images.

    The containers are the runner's (ocirun.run.containers.ContainerStore implements
    this); the store never reads their files, so their format is the runner's alone.
    """

    def using_image(self, image_id: str) -> list[str]:
        """Ids of the containers built on `image_id`, sorted."""
        ...

    def tree_dirs(self) -> list[str]:
        """The containers' directories (what `system df` counts)."""
        ...

    def check(self, repair: bool) -> list[Finding]:
        """The containers' part of `system check` (layers.check): what is damaged, repaired."""
        ...


class NoContainers:
    """The ContainerIndex of a store without a runner: no image is in use."""

    def using_image(self, image_id: str) -> list[str]:
        return []

    def tree_dirs(self) -> list[str]:
        return []

    def check(self, repair: bool) -> list[Finding]:
        return []


def hex_of(image_id: str) -> str:
    """The hex part of an image id, validated (it becomes a directory name)."""
    if ":" not in image_id:
        image_id = "sha256:" + image_id
    return parse_digest(image_id)[1]
