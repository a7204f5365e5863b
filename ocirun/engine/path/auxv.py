"""/proc/PID/auxv of a program the engine runs through its loader (`ld.so PROGRAM`).

The kernel executed the loader, so its auxiliary vector names the loader: AT_PHDR and
AT_ENTRY are the loader's, AT_BASE is 0. The loader corrects the copy on the program's
stack (getauxval sees the program), not the kernel's, which /proc/PID/auxv shows, and
debuggers (gdb) find the program's load address and the dynamic linker from that file.
Once the loader has mapped the program, the copy the guest reads names the program as
an exec by the kernel would have: its program headers and entry point where they are
mapped, AT_BASE the loader's load address. Before that, the kernel's vector is shown.
"""

from __future__ import annotations

import os
import struct

AT_PHDR, AT_PHENT, AT_PHNUM, AT_BASE, AT_ENTRY = 3, 4, 5, 7, 9
ET_DYN = 3
PT_LOAD, PT_PHDR = 1, 6
PAGE_MASK = ~0xFFF


def _elf_layout(path: str) -> tuple[int, int, int, int, int, int, int | None] | None:
    """(e_type, e_entry, e_phoff, e_phentsize, e_phnum, first PT_LOAD vaddr, PT_PHDR vaddr)
    of a 64-bit little-endian ELF file (None: another kind of file)."""
    try:
        with open(path, "rb") as f:
            hdr = f.read(64)
            if len(hdr) < 64 or hdr[:4] != b"\x7fELF" or hdr[4] != 2 or hdr[5] != 1:
                return None
            etype = struct.unpack_from("<H", hdr, 16)[0]
            entry, phoff = struct.unpack_from("<QQ", hdr, 24)
            phentsize, phnum = struct.unpack_from("<HH", hdr, 54)
            f.seek(phoff)
            table = f.read(phentsize * phnum)
    except OSError:
        return None
    first_load = phdr = None
    for i in range(min(phnum, len(table) // max(phentsize, 1))):
        p_type = struct.unpack_from("<I", table, i * phentsize)[0]
        vaddr = struct.unpack_from("<Q", table, i * phentsize + 16)[0]
        if p_type == PT_LOAD and first_load is None:
            first_load = vaddr
        elif p_type == PT_PHDR:
            phdr = vaddr
    if first_load is None:
        return None
    return etype, entry, phoff, phentsize, phnum, first_load, phdr


def _mapped_at(pid: int, st: os.stat_result) -> int | None:
    """The lowest address where file `st` is mapped from its offset 0 in process `pid`."""
    dev = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}"
    low = None
    try:
        with open(f"/proc/{pid}/maps") as f:
            for line in f:
                fields = line.split(maxsplit=5)
                if len(fields) >= 5 and fields[4] == str(st.st_ino) and fields[3] == dev and int(fields[2], 16) == 0:
                    start = int(fields[0].split("-", 1)[0], 16)
                    low = start if low is None else min(low, start)
    except OSError:
        return None
    return low


def program_auxv(pid: int, program_host: str) -> bytes | None:
    """The auxiliary vector of `pid` naming the program at `program_host` (None: not mapped yet)."""
    try:
        with open(f"/proc/{pid}/auxv", "rb") as f:
            raw = f.read()
        st = os.stat(program_host)
    except OSError:
        return None
    prog = _elf_layout(program_host)
    loader = _elf_layout(f"/proc/{pid}/exe")
    base = _mapped_at(pid, st)
    if prog is None or loader is None or base is None:
        return None
    etype, entry, phoff, phentsize, phnum, first_load, phdr = prog
    bias = base - (first_load & PAGE_MASK) if etype == ET_DYN else 0
    pairs = list(struct.iter_unpack("<QQ", raw[: len(raw) // 16 * 16]))
    kernel = dict(pairs)
    fixed = {
        AT_PHDR: bias + (phdr if phdr is not None else first_load + phoff),
        AT_PHENT: phentsize,
        AT_PHNUM: phnum,
        AT_ENTRY: bias + entry,
        AT_BASE: kernel.get(AT_ENTRY, 0) - loader[1],  # the loader's own load address
    }
    return b"".join(struct.pack("<QQ", k, fixed.get(k, v)) for k, v in pairs)
