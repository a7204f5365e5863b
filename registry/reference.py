"""Image references, parsed as docker does (distribution/reference's normalised names).

`debian` = `docker.io/library/debian:latest`; `host:port/repo:tag`; `repo@sha256:...`;
`repo:tag@sha256:...` (the digest wins, the tag is kept for display); a first
component is a registry when it holds `.` or `:` or is `localhost`. Also the archive
transports `docker-archive:PATH`, `oci:PATH[:ref]` and `oci-archive:PATH[:ref]`.
"""

from __future__ import annotations

import re

from ocirun.errors import OcirunError
from ocirun.util.records import dataclass
from registry.config import DOCKER_HUB, DOCKER_HUB_ALIASES, RegistryConfig

# distribution/reference's grammar, as data.
_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:.]+\])(?::[0-9]+)?"
# patterns, compiled by re.match at their first use (a run names no digest and mostly no
# registry: no compiling at every start)
PATH_RE = rf"^{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*$"
DOMAIN_RE = rf"^{_DOMAIN}$"
TAG_RE = r"^[\w][\w.-]{0,127}$"
DIGEST_RE = r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$"
SHA256_RE = r"^sha256:[a-f0-9]{64}$"
NAME_MAX = 255

ARCHIVE_TRANSPORTS = ("docker-archive", "oci-archive", "oci")


@dataclass(frozen=True)
class Reference:
    """A registry image reference, fully qualified."""

    registry: str  # docker.io, 127.0.0.1:5000, [::1]:5000
    repository: str  # library/debian
    tag: str | None = None  # None only when pulled by digest alone
    digest: str | None = None

    @property
    def name(self) -> str:
        """Canonical repository name: `docker.io/library/debian`."""
        return f"{self.registry}/{self.repository}"

    @property
    def ref(self) -> str:
        """What to ask the registry for: the digest if any, else the tag."""
        return self.digest or self.tag or "latest"

    @property
    def familiar(self) -> str:
        """Docker's short form: `debian:12`, `127.0.0.1:5000/bb:1`."""
        name = self.name
        if self.registry == DOCKER_HUB:
            name = self.repository.removeprefix("library/")
        return name + self._suffix()

    def _suffix(self) -> str:
        out = f":{self.tag}" if self.tag else ""
        return out + (f"@{self.digest}" if self.digest else "")

    def __str__(self) -> str:
        return self.name + self._suffix()


@dataclass(frozen=True)
class ArchiveReference:
    """`docker-archive:PATH`, `oci:PATH[:ref]`, `oci-archive:PATH[:ref]`."""

    transport: str  # one of ARCHIVE_TRANSPORTS
    path: str
    ref: str | None = None  # oci ref.name annotation, or docker-archive repo:tag / @index

    def __str__(self) -> str:
        return f"{self.transport}:{self.path}" + (f":{self.ref}" if self.ref else "")


def parse_reference(text: str, config: RegistryConfig | None = None) -> Reference | ArchiveReference:
    """Parse an image reference or an archive transport reference."""
    for transport in ARCHIVE_TRANSPORTS:
        if text.startswith(transport + ":"):
            return _parse_archive(transport, text[len(transport) + 1 :])
    return parse_image_reference(text, config)


def _parse_archive(transport: str, rest: str) -> ArchiveReference:
    """PATH[:ref]: the path is the longest prefix before a `:` that exists on disk.

    When no prefix exists (an error later), docker-archive splits at the first `:`
    (its ref is `repo:tag`), oci at the last (its ref is a single name).
    """
    import os

    if not rest:
        raise OcirunError(f"invalid reference {transport}:: missing path")
    if os.path.exists(rest) or ":" not in rest:
        return ArchiveReference(transport, rest, None)
    cuts = [i for i, c in enumerate(rest) if c == ":"]
    for i in reversed(cuts):
        if os.path.exists(rest[:i]):
            return ArchiveReference(transport, rest[:i], rest[i + 1 :] or None)
    i = cuts[0] if transport == "docker-archive" else cuts[-1]
    return ArchiveReference(transport, rest[:i], rest[i + 1 :] or None)


def parse_image_reference(text: str, config: RegistryConfig | None = None) -> Reference:
    """docker's ParseNormalizedNamed, plus the default-registry setting for short names."""
    original = text
    if not text:
        raise OcirunError("invalid reference format: empty image name")
    digest = None
    if "@" in text:
        text, _, digest = text.partition("@")
        if not re.match(DIGEST_RE, digest):
            raise OcirunError(f"invalid reference format: bad digest in {original!r}")
        if digest.startswith("sha256:") and not re.match(SHA256_RE, digest):
            raise OcirunError(f"invalid reference format: bad sha256 digest in {original!r}")
    tag = None
    slash = text.rfind("/")
    colon = text.rfind(":")
    if colon > slash:
        text, tag = text[:colon], text[colon + 1 :]
        if not re.match(TAG_RE, tag):
            raise OcirunError(f"invalid reference format: bad tag {tag!r} in {original!r}")

    first, sep, remainder = text.partition("/")
    is_domain = sep and (
        "." in first or ":" in first or first == "localhost" or first.lower() != first
    )
    if is_domain:
        domain, path = first, remainder
        if not re.match(DOMAIN_RE, domain):
            raise OcirunError(f"invalid reference format: bad registry {domain!r} in {original!r}")
        if domain in DOCKER_HUB_ALIASES:
            domain = DOCKER_HUB
    else:
        cfg = config if config is not None else RegistryConfig.load()
        domain, path = cfg.default_registry, text
    if domain == DOCKER_HUB and "/" not in path:
        path = "library/" + path
    if not is_domain and domain != DOCKER_HUB and "/" not in path:
        path = "library/" + path  # a default registry stands in for Docker Hub

    if path.lower() != path:
        raise OcirunError(f"invalid reference format: repository name must be lowercase: {original!r}")
    if not re.match(PATH_RE, path):
        raise OcirunError(f"invalid reference format: {original!r}")
    if len(domain) + 1 + len(path) > NAME_MAX:
        raise OcirunError(f"invalid reference format: repository name too long: {original!r}")
    if tag is None and digest is None:
        tag = "latest"
    return Reference(domain, path, tag, digest)
