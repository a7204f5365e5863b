"""Would the kernel run a foreign program by itself? (binfmt_misc, read-only checks)

If binfmt_misc is mounted, enabled and has an enabled handler whose magic/mask
matches a foreign ELF header, an exec of a foreign program succeeds without
ocirun's QEMU path, and a test of that path proves nothing. ocirun never mounts
or registers binfmt_misc; these functions only read it, plus one direct probe
(`exec_succeeds_untraced`) that asks the kernel itself.
"""

from __future__ import annotations

import errno
import os
import subprocess
from dataclasses import dataclass

from ocirun.engine.qemu.arch import ELFCLASS64, ELFDATA2LSB, Arch

BINFMT_DIR = "/proc/sys/fs/binfmt_misc"
ET_EXEC, ET_DYN = 2, 3


@dataclass(frozen=True)
class BinfmtHandler:
    """One registered binfmt_misc entry (only the magic kind is parsed)."""

    name: str
    enabled: bool
    interpreter: str
    offset: int
    magic: bytes
    mask: bytes


def is_mounted(binfmt_dir: str = BINFMT_DIR) -> bool:
    """binfmt_misc is mounted where the kernel reads it (its `status` file exists)."""
    return os.path.exists(os.path.join(binfmt_dir, "status"))


def _parse_handler(name: str, text: str) -> BinfmtHandler | None:
    fields: dict[str, str] = {}
    enabled = False
    for line in text.splitlines():
        if line.strip() == "enabled":
            enabled = True
        key, _, value = line.partition(" ")
        fields[key] = value.strip()
    if "magic" not in fields:
        return None  # extension-based entry: never matches an ELF file
    magic = bytes.fromhex(fields["magic"])
    mask = bytes.fromhex(fields["mask"]) if "mask" in fields else b"\xff" * len(magic)
    return BinfmtHandler(name, enabled, fields.get("interpreter", ""), int(fields.get("offset", "0")), magic, mask)


def handlers(binfmt_dir: str = BINFMT_DIR) -> list[BinfmtHandler]:
    """Every registered entry; [] when binfmt_misc is not mounted."""
    if not is_mounted(binfmt_dir):
        return []
    out = []
    for name in sorted(os.listdir(binfmt_dir)):
        if name in ("status", "register"):
            continue
        try:
            with open(os.path.join(binfmt_dir, name)) as f:
                handler = _parse_handler(name, f.read())
        except OSError:
            continue
        if handler is not None:
            out.append(handler)
    return out


def elf_header_for(arch: Arch, e_type: int = ET_EXEC) -> bytes:
    """A 64-byte ELF header of an `arch` program (binfmt magics may look as far as e_flags)."""
    order = "little" if arch.endian == ELFDATA2LSB else "big"
    head = bytearray(64)
    head[0:8] = b"\x7fELF" + bytes([arch.elf_class, arch.endian, 1, 0])
    head[16:18] = e_type.to_bytes(2, order)
    head[18:20] = arch.machine.to_bytes(2, order)
    head[20:24] = (1).to_bytes(4, order)  # e_version
    flags_off = 48 if arch.elf_class == ELFCLASS64 else 36
    head[flags_off : flags_off + 4] = arch.flags_value.to_bytes(4, order)
    return bytes(head)


def _matches(handler: BinfmtHandler, head: bytes) -> bool:
    window = head[handler.offset : handler.offset + len(handler.magic)]
    if len(window) < len(handler.magic):
        return False
    return all((b & m) == (g & m) for b, m, g in zip(window, handler.mask, handler.magic, strict=True))


def foreign_handler(arch: Arch, binfmt_dir: str = BINFMT_DIR) -> BinfmtHandler | None:
    """The enabled handler that would run `arch` programs without ocirun, or None."""
    if not is_mounted(binfmt_dir):
        return None
    try:
        with open(os.path.join(binfmt_dir, "status")) as f:
            if f.read().strip() != "enabled":
                return None
    except OSError:
        return None
    heads = [elf_header_for(arch, t) for t in (ET_EXEC, ET_DYN)]
    for handler in handlers(binfmt_dir):
        if handler.enabled and any(_matches(handler, h) for h in heads):
            return handler
    return None


def exec_succeeds_untraced(program: str, args: tuple[str, ...] = ("true",)) -> bool:
    """Ask the kernel directly: does exec of this (foreign) program work without a tracer?

    False means the kernel refused it (ENOEXEC), so nothing but ocirun's QEMU path can
    run it; True means some binfmt handler (or a natively capable CPU) ran it.
    """
    try:
        subprocess.run([program, *args], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=60, check=False)
    except OSError as exc:
        if exc.errno == errno.ENOEXEC:
            return False
        raise
    return True


__all__ = [
    "BinfmtHandler",
    "elf_header_for",
    "exec_succeeds_untraced",
    "foreign_handler",
    "handlers",
    "is_mounted",
]
