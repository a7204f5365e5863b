"""Foreign-architecture programs through QEMU user-mode (PRoot's `-q`), chosen by itself.

- arch.py: the architecture table (ELF identity, OCI platform, QEMU and Debian names).
- locate.py: finding `qemu-<arch>[-static]` (or an override) on the host.
- wrap.py: how an execve of a foreign guest program becomes an execve of QEMU.

The runner calls `qemu_for_platform(platform)`; `ocirun proot -q CMD` builds the same
EnginePlan.qemu list by hand.
"""

from __future__ import annotations

from collections.abc import Mapping

from ocirun.engine.qemu.arch import Arch, arch_for_platform, host_arch, runs_natively
from ocirun.engine.qemu.locate import QemuCommand, describe, find_qemu
from ocirun.engine.qemu.wrap import HOST_ROOTFS
from ocirun.errors import EXIT_OCIRUN, OcirunError


def qemu_for_platform(
    platform: object,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, str] | None = None,
    host: Arch | None = None,
) -> list[str] | None:
    """The QEMU command (for EnginePlan.qemu) that runs `platform` programs here; None when native.

    platform: `linux/arm64`, `arm/v7`, a {"architecture", "variant"} dict or an object with
    those attributes; host defaults to this machine. Raises OcirunError(..., 125) for an unknown platform or a missing QEMU.
    """
    arch = arch_for_platform(platform)
    if arch is None:
        raise OcirunError(f"unsupported platform {_show(platform)}: no QEMU user-mode target for it", EXIT_OCIRUN)
    if runs_natively(arch, host or host_arch()):
        return None
    return find_qemu(arch, env, overrides).argv()


def _show(platform: object) -> str:
    if isinstance(platform, str):
        return repr(platform)
    if isinstance(platform, dict):
        parts = [platform.get("os") or "linux", platform.get("architecture") or "?", platform.get("variant")]
    else:
        parts = [getattr(platform, a, None) for a in ("os", "architecture", "variant")]
    return "/".join(str(p) for p in parts if p)


__all__ = [
    "HOST_ROOTFS",
    "Arch",
    "QemuCommand",
    "describe",
    "find_qemu",
    "host_arch",
    "qemu_for_platform",
]
