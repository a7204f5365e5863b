"""The two facts about a host ELF file this package needs: its identity and its PT_INTERP.

Kept here (small, no dependencies) so QEMU selection works before and without the
engine's own ELF parser; both read host files only.
"""

from __future__ import annotations

import struct

from ocirun.engine.qemu.arch import ELFCLASS64, ELFDATA2LSB, ElfId, elf_id_from_header

PT_INTERP = 3


def interp_of(path: str) -> str | None:
    """The ELF interpreter a host program names (None: static, or not ELF)."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
            ident: ElfId | None = elf_id_from_header(head)
            if ident is None:
                return None
            order = "<" if ident.endian == ELFDATA2LSB else ">"
            if ident.elf_class == ELFCLASS64:
                phoff, phentsize, phnum = struct.unpack_from(order + "Q", head, 32)[0], *struct.unpack_from(order + "HH", head, 54)
            else:
                phoff, phentsize, phnum = struct.unpack_from(order + "I", head, 28)[0], *struct.unpack_from(order + "HH", head, 42)
            f.seek(phoff)
            table = f.read(phentsize * phnum)
            for i in range(phnum):
                entry = table[i * phentsize : (i + 1) * phentsize]
                if len(entry) < phentsize or struct.unpack_from(order + "I", entry, 0)[0] != PT_INTERP:
                    continue
                if ident.elf_class == ELFCLASS64:
                    offset, filesz = struct.unpack_from(order + "Q", entry, 8)[0], struct.unpack_from(order + "Q", entry, 32)[0]
                else:
                    offset, filesz = struct.unpack_from(order + "I", entry, 4)[0], struct.unpack_from(order + "I", entry, 16)[0]
                f.seek(offset)
                return f.read(min(filesz, 4096)).split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
    except (OSError, struct.error):
        return None
    return None
