"""Platforms (os/architecture/variant): parsing, normalisation, host detection, selection.

Normalisation follows containerd's `platforms` package, which docker uses: the names
`uname -m` and Debian give (x86_64, aarch64, armv7l, armhf, i686) map to the OCI ones
(amd64, arm64, arm/v7, 386), and arm64's default variant is v8, arm's is v7.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Sequence

from ocirun.util.records import dataclass

TYPE_CHECKING = False  # typing's, without importing typing (start-up time)
if TYPE_CHECKING:
    from typing import Any

# alias -> (architecture, variant implied by the alias or None)
ARCH_ALIASES: dict[str, tuple[str, str | None]] = {
    "x86_64": ("amd64", None),
    "x86-64": ("amd64", None),
    "amd64": ("amd64", None),
    "aarch64": ("arm64", None),
    "arm64": ("arm64", None),
    "armhf": ("arm", "v7"),
    "armel": ("arm", "v6"),
    "armv8l": ("arm", "v8"),
    "armv7l": ("arm", "v7"),
    "armv7": ("arm", "v7"),
    "armv6l": ("arm", "v6"),
    "armv6": ("arm", "v6"),
    "armv5tel": ("arm", "v5"),
    "armv5l": ("arm", "v5"),
    "arm": ("arm", None),
    "i386": ("386", None),
    "i486": ("386", None),
    "i586": ("386", None),
    "i686": ("386", None),
    "x86": ("386", None),
    "386": ("386", None),
    "ppc64le": ("ppc64le", None),
    "ppc64el": ("ppc64le", None),
    "s390x": ("s390x", None),
    "riscv64": ("riscv64", None),
    "mips64le": ("mips64le", None),
    "mips64el": ("mips64le", None),
    "loong64": ("loong64", None),
    "loongarch64": ("loong64", None),
}

# Default variant of an architecture when none is given (containerd's).
DEFAULT_VARIANT: dict[str, str] = {"arm64": "v8", "arm": "v7"}

# Older variants a CPU of the given variant also runs (best first), as containerd's matcher.
COMPATIBLE_VARIANTS: dict[tuple[str, str], tuple[str, ...]] = {
    ("arm", "v8"): ("v8", "v7", "v6", "v5"),
    ("arm", "v7"): ("v7", "v6", "v5"),
    ("arm", "v6"): ("v6", "v5"),
    ("arm", "v5"): ("v5",),
    ("arm64", "v8"): ("v8",),
    ("amd64", "v4"): ("v4", "v3", "v2", "v1"),
    ("amd64", "v3"): ("v3", "v2", "v1"),
    ("amd64", "v2"): ("v2", "v1"),
    ("amd64", "v1"): ("v1",),
}

KNOWN_OS = ("linux", "windows", "darwin", "freebsd", "netbsd", "openbsd", "solaris", "android")


def _norm_variant(arch: str, variant: str | None) -> str | None:
    """`8` -> `v8`; the architecture's default when absent; amd64 `v1` is the same as none."""
    if variant:
        variant = variant.lower()
        if variant.isdigit():
            variant = "v" + variant
    else:
        variant = DEFAULT_VARIANT.get(arch)
    if arch == "amd64" and variant == "v1":
        return None
    return variant


@dataclass(frozen=True)
class Platform:
    """A normalised os/architecture[/variant]."""

    os: str
    architecture: str
    variant: str | None = None

    @classmethod
    def of(cls, os_name: str, arch: str, variant: str | None = None) -> Platform:
        """Build a normalised platform from possibly unnormalised names."""
        arch_l = arch.lower()
        norm_arch, implied = ARCH_ALIASES.get(arch_l, (arch_l, None))
        return cls(os_name.lower() or "linux", norm_arch, _norm_variant(norm_arch, variant or implied))

    @classmethod
    def parse(cls, text: str) -> Platform:
        """`linux/arm64/v8`, `arm64`, `arm/v7`, `linux/amd64`, `aarch64`, `armv7l`."""
        from ocirun.errors import OcirunError

        parts = [p for p in text.strip().split("/")]
        if not text.strip() or any(not p for p in parts) or len(parts) > 3:
            raise OcirunError(f"invalid platform {text!r}: expected os/arch[/variant], e.g. linux/arm64")
        first = parts[0].lower()
        if first in KNOWN_OS:
            if len(parts) == 1:
                return cls.of(first, host_platform().architecture, None)
            return cls.of(first, parts[1], parts[2] if len(parts) == 3 else None)
        if len(parts) == 3:
            raise OcirunError(f"invalid platform {text!r}: unknown operating system {parts[0]!r}")
        return cls.of("linux", parts[0], parts[1] if len(parts) == 2 else None)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Platform:
        """From an OCI `platform` object or an image config (os, architecture, variant)."""
        return cls.of(str(d.get("os") or "linux"), str(d.get("architecture") or "unknown"), d.get("variant"))

    def to_json(self) -> dict[str, str]:
        out = {"os": self.os, "architecture": self.architecture}
        if self.variant:
            out["variant"] = self.variant
        return out

    def __str__(self) -> str:
        return f"{self.os}/{self.architecture}" + (f"/{self.variant}" if self.variant else "")

    def rank(self, candidate: Platform) -> int | None:
        """How well `candidate` (an image's platform) suits a host of platform `self`.

        0 is an exact match, higher is a worse but runnable match, None does not run.
        """
        if candidate.os != self.os or candidate.architecture != self.architecture:
            return None
        if candidate.variant == self.variant:
            return 0
        if candidate.variant is None:
            return 1  # image does not say: assume it runs
        if self.variant is None:
            return None
        compatible = COMPATIBLE_VARIANTS.get((self.architecture, self.variant), (self.variant,))
        if candidate.variant in compatible:
            return 1 + compatible.index(candidate.variant)
        return None


# 64-bit kernel, 32-bit userland (old Android phones under Termux, i386 chroots).
USERLAND_32: dict[str, str] = {"arm64": "armv7l", "amd64": "i686"}


def _userland_bits() -> int:
    return struct.calcsize("P") * 8


def _machine() -> str:
    """uname -m (platform.machine()'s answer, without importing that module at every run)."""
    return os.uname().machine


def host_platform() -> Platform:
    """The platform of this machine's userland (`OCIRUN_HOST_ARCH` overrides uname -m).

    A 32-bit Python on a 64-bit kernel means a 32-bit userland: arm/v7 or 386 images.
    """
    override = os.environ.get("OCIRUN_HOST_ARCH")
    if override:
        return Platform.of("linux", override)
    plat = Platform.of("linux", _machine() or "amd64")
    if _userland_bits() == 32 and plat.architecture in USERLAND_32:
        plat = Platform.of("linux", USERLAND_32[plat.architecture])
    return plat


def select(wanted: Platform, candidates: Sequence[tuple[Platform, Any]]) -> Any | None:
    """Pick the item whose platform suits `wanted` best (first wins on ties), or None."""
    best = None
    best_rank: int | None = None
    for plat, item in candidates:
        r = wanted.rank(plat)
        if r is not None and (best_rank is None or r < best_rank):
            best, best_rank = item, r
    return best


def describe(platforms: Iterable[Platform]) -> str:
    """`linux/amd64, linux/arm64/v8` for error messages."""
    names = sorted({str(p) for p in platforms})
    return ", ".join(names) if names else "none"
