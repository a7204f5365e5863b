"""CPU architectures as data: ELF identity <-> OCI platform <-> QEMU name <-> Debian name.

One row per QEMU user-mode target ocirun knows. A program's architecture is told
from its ELF header (e_machine, EI_CLASS, EI_DATA and, for MIPS n32, e_flags);
an image's from its OCI platform. The same table serves every host: the host's
own row is found from the ELF header of the running Python interpreter (the
tracer's own ABI, which is what the engine can trace natively).
"""

from __future__ import annotations

import os
import sys

from ocirun.util.records import dataclass, field

# ELF constants used below (elf.h).
ELFCLASS32, ELFCLASS64 = 1, 2
ELFDATA2LSB, ELFDATA2MSB = 1, 2
EM_386 = 3
EM_68K = 4
EM_MIPS = 8
EM_PARISC = 15
EM_PPC = 20
EM_PPC64 = 21
EM_S390 = 22
EM_ARM = 40
EM_SH = 42
EM_SPARCV9 = 43
EM_X86_64 = 62
EM_AARCH64 = 183
EM_RISCV = 243
EM_LOONGARCH = 258
EM_ALPHA = 0x9026
EF_MIPS_ABI2 = 0x20  # MIPS n32 ABI (32-bit ELF on a 64-bit MIPS CPU)


@dataclass(frozen=True)
class Arch:
    """One CPU architecture as every tool names it.

    qemu: the QEMU user-mode target (`qemu-<qemu>[-static]`).
    machine/elf_class/endian/flags_*: how an ELF header of this architecture looks.
    oci: OCI `architecture` name, variants: OCI variants it covers (first = default).
    uname: what `uname -m` says on such a machine, debian: Debian's architecture name.
    """

    qemu: str
    machine: int
    elf_class: int
    endian: int
    oci: str | None
    uname: str
    debian: str | None
    variants: tuple[str, ...] = ()
    flags_mask: int = 0  # e_flags bits that must equal flags_value for this row
    flags_value: int = 0
    aliases: tuple[str, ...] = field(default=())

    @property
    def platform(self) -> str:
        """The OCI platform string, e.g. `linux/arm/v7`."""
        base = f"linux/{self.oci or self.qemu}"
        return f"{base}/{self.variants[0]}" if self.variants else base


L, B = ELFDATA2LSB, ELFDATA2MSB
C32, C64 = ELFCLASS32, ELFCLASS64

# Order matters where two rows share an ELF identity: the first match wins.
ARCHES: tuple[Arch, ...] = (
    Arch("x86_64", EM_X86_64, C64, L, "amd64", "x86_64", "amd64", aliases=("x86-64",)),
    Arch("i386", EM_386, C32, L, "386", "i686", "i386", aliases=("i486", "i586", "i686", "x86")),
    Arch("aarch64", EM_AARCH64, C64, L, "arm64", "aarch64", "arm64", ("v8",)),
    Arch("aarch64_be", EM_AARCH64, C64, B, None, "aarch64_be", None),
    Arch("arm", EM_ARM, C32, L, "arm", "armv7l", "armhf", ("v7", "v6", "v5", "v8"),
         aliases=("armhf", "armel", "armv7l", "armv6l", "armv5tel", "armv8l")),
    Arch("armeb", EM_ARM, C32, B, None, "armv7b", None),
    Arch("ppc64le", EM_PPC64, C64, L, "ppc64le", "ppc64le", "ppc64el", aliases=("ppc64el",)),
    Arch("ppc64", EM_PPC64, C64, B, "ppc64", "ppc64", "ppc64"),
    Arch("ppc", EM_PPC, C32, B, "ppc", "ppc", "powerpc", aliases=("powerpc",)),
    Arch("s390x", EM_S390, C64, B, "s390x", "s390x", "s390x"),
    Arch("riscv64", EM_RISCV, C64, L, "riscv64", "riscv64", "riscv64"),
    Arch("riscv32", EM_RISCV, C32, L, "riscv32", "riscv32", None),
    Arch("mips64el", EM_MIPS, C64, L, "mips64le", "mips64", "mips64el"),
    Arch("mips64", EM_MIPS, C64, B, "mips64", "mips64", None),
    Arch("mipsn32el", EM_MIPS, C32, L, None, "mips64", "mipsn32el",
         flags_mask=EF_MIPS_ABI2, flags_value=EF_MIPS_ABI2),
    Arch("mipsn32", EM_MIPS, C32, B, None, "mips64", "mipsn32",
         flags_mask=EF_MIPS_ABI2, flags_value=EF_MIPS_ABI2),
    Arch("mipsel", EM_MIPS, C32, L, "mipsle", "mips", "mipsel", aliases=("mipsel",)),
    Arch("mips", EM_MIPS, C32, B, "mips", "mips", "mips"),
    Arch("loongarch64", EM_LOONGARCH, C64, L, "loong64", "loongarch64", "loong64"),
    Arch("sparc64", EM_SPARCV9, C64, B, "sparc64", "sparc64", "sparc64"),
    Arch("alpha", EM_ALPHA, C64, L, "alpha", "alpha", "alpha"),
    Arch("m68k", EM_68K, C32, B, "m68k", "m68k", "m68k"),
    Arch("sh4", EM_SH, C32, L, "sh4", "sh4", "sh4"),
    Arch("hppa", EM_PARISC, C32, B, "hppa", "parisc", "hppa"),
)

# Architectures whose programs the engine runs without QEMU on a host of the key's
# architecture, besides the host's own: i386 on x86_64 (the kernel runs them and the
# engine traces their int 0x80 ABI: ocirun/engine/arch/i386.py). arm on aarch64 would
# need a CPU with AArch32 and a table for its ABI: it goes through QEMU.
NATIVE_ON: dict[str, frozenset[str]] = {"x86_64": frozenset({"i386"})}


@dataclass(frozen=True)
class ElfId:
    """The part of an ELF header that says which CPU runs it."""

    elf_class: int
    endian: int
    machine: int
    flags: int = 0


def elf_id_from_header(head: bytes) -> ElfId | None:
    """Read the identity from the first 52+ bytes of a file; None if it is not ELF."""
    if len(head) < 52 or head[:4] != b"\x7fELF" or head[4] not in (C32, C64) or head[5] not in (L, B):
        return None
    order = "little" if head[5] == L else "big"
    machine = int.from_bytes(head[18:20], order)
    flags_off = 36 if head[4] == C32 else 48
    flags = int.from_bytes(head[flags_off : flags_off + 4], order) if len(head) >= flags_off + 4 else 0
    return ElfId(head[4], head[5], machine, flags)


def read_elf_id(path: str) -> ElfId | None:
    """The ELF identity of a host file, or None if it is not an ELF file."""
    try:
        with open(path, "rb") as f:
            return elf_id_from_header(f.read(64))
    except OSError:
        return None


def arch_for_elf(ident: ElfId) -> Arch | None:
    """The table row of an ELF identity (None: an architecture QEMU does not run)."""
    for arch in ARCHES:
        if (arch.machine, arch.elf_class, arch.endian) != (ident.machine, ident.elf_class, ident.endian):
            continue
        if arch.flags_mask and (ident.flags & arch.flags_mask) != arch.flags_value:
            continue
        return arch
    return None


def arch_by_name(name: str) -> Arch | None:
    """Look up a QEMU, Debian, `uname -m`, OCI or alias name (case-insensitive)."""
    key = name.strip().lower()
    for arch in ARCHES:
        if key == arch.qemu:
            return arch
    for arch in ARCHES:
        if key in (arch.oci, arch.debian, arch.uname) or key in arch.aliases:
            return arch
    return None


def _platform_fields(platform: object) -> tuple[str, str, str | None]:
    """(os, architecture, variant) from a string, a mapping or an object with those attributes."""
    if isinstance(platform, str):
        parts = [p for p in platform.strip().lower().split("/") if p]
        if parts and parts[0] in ("linux", "android"):
            os_name, parts = parts[0], parts[1:]
        else:
            os_name = "linux"
        if not parts:
            return os_name, "", None
        return os_name, parts[0], parts[1] if len(parts) > 1 else None
    if isinstance(platform, dict):
        return (
            str(platform.get("os") or "linux"),
            str(platform.get("architecture") or ""),
            platform.get("variant"),
        )
    return (
        str(getattr(platform, "os", "linux") or "linux"),
        str(getattr(platform, "architecture", "") or ""),
        getattr(platform, "variant", None),
    )


def arch_for_platform(platform: object) -> Arch | None:
    """The row of an OCI platform (`linux/arm64`, `arm/v7`, `386`, a dict or Platform object)."""
    _os, name, variant = _platform_fields(platform)
    arch = arch_by_name(name)
    if arch is None or not variant:
        return arch
    variant = variant.lower() if variant.lower().startswith("v") else "v" + variant.lower()
    if arch.variants and variant not in arch.variants:
        return None
    return arch


def host_arch() -> Arch:
    """The host's row: the ELF identity of this Python interpreter, else `uname -m`."""
    for path in ("/proc/self/exe", sys.executable):
        ident = read_elf_id(path) if path else None
        arch = arch_for_elf(ident) if ident else None
        if arch is not None:
            return arch
    arch = arch_by_name(os.uname().machine)
    if arch is None:
        from ocirun.errors import OcirunError

        raise OcirunError(f"unknown host architecture {os.uname().machine!r}")
    return arch


def runs_natively(guest: Arch, host: Arch | None = None) -> bool:
    """True when the engine runs programs of `guest` without QEMU on `host`."""
    host = host or host_arch()
    return guest == host or guest.qemu in NATIVE_ON.get(host.qemu, frozenset())
