"""A tiny static i386 program, assembled by hand: print the first 64 bytes of a file.

Real enough for QEMU (qemu-i386 loads and runs it) and small enough to build in a
test: no i386 toolchain or foreign Debian architecture is needed on the host.
"""

from __future__ import annotations

import struct

BASE = 0x08048000
EHDR, PHDR = 52, 32


def i386_cat(path: str) -> bytes:
    """open(path) / read 64 bytes / write them to stdout / exit(0), with int 0x80 syscalls."""
    text_at = BASE + EHDR + PHDR

    def code(path_addr: int, buf_addr: int) -> bytes:
        return b"".join([
            b"\xb8" + struct.pack("<I", 5),         # mov eax, 5 (open)
            b"\xbb" + struct.pack("<I", path_addr),  # mov ebx, path
            b"\x31\xc9",                             # xor ecx, ecx (O_RDONLY)
            b"\xcd\x80",                             # int 0x80
            b"\x89\xc3",                             # mov ebx, eax (fd)
            b"\xb8" + struct.pack("<I", 3),         # mov eax, 3 (read)
            b"\xb9" + struct.pack("<I", buf_addr),   # mov ecx, buf
            b"\xba" + struct.pack("<I", 64),        # mov edx, 64
            b"\xcd\x80",                             # int 0x80
            b"\x89\xc2",                             # mov edx, eax (count)
            b"\xb8" + struct.pack("<I", 4),         # mov eax, 4 (write)
            b"\xbb" + struct.pack("<I", 1),         # mov ebx, 1
            b"\xb9" + struct.pack("<I", buf_addr),   # mov ecx, buf
            b"\xcd\x80",                             # int 0x80
            b"\xb8" + struct.pack("<I", 1),         # mov eax, 1 (exit)
            b"\x31\xdb",                             # xor ebx, ebx
            b"\xcd\x80",                             # int 0x80
        ])

    size = len(code(0, 0))
    path_addr = text_at + size
    data = path.encode() + b"\0"
    filesz = EHDR + PHDR + size + len(data)
    buf_addr = BASE + ((filesz + 15) & ~15)
    memsz = buf_addr - BASE + 64
    ident = b"\x7fELF\x01\x01\x01\x00" + b"\0" * 8
    ehdr = ident + struct.pack("<HHIIIIIHHHHHH", 2, 3, 1, text_at, EHDR, 0, 0, EHDR, PHDR, 1, 0, 0, 0)
    phdr = struct.pack("<IIIIIIII", 1, 0, BASE, BASE, filesz, memsz, 7, 0x1000)
    return ehdr + phdr + code(path_addr, buf_addr) + data


# --- 64-bit targets: the same program for riscv64, s390x (big-endian) and ppc64le ---------

BASE64 = 0x10000000
EHDR64, PHDR64 = 64, 56


def _rv_i(imm: int, rs1: int, rd: int, funct3: int = 0, opcode: int = 0x13) -> bytes:
    return struct.pack("<I", ((imm & 0xFFF) << 20) | (rs1 << 15) | (funct3 << 12) | (rd << 7) | opcode)


def _rv_auipc(rd: int) -> bytes:
    return struct.pack("<I", (rd << 7) | 0x17)


def _riscv64(at: int, path: int, buf: int) -> bytes:
    a0, a1, a2, a3, a7, zero = 10, 11, 12, 13, 17, 0
    ecall = struct.pack("<I", 0x73)
    out = b""

    def la(rd: int, target: int) -> bytes:  # auipc rd, 0; addi rd, rd, target - pc
        pc = at + len(out)
        return _rv_auipc(rd) + _rv_i(target - pc, rd, rd)

    out += _rv_i(-100, zero, a0)            # AT_FDCWD
    out += la(a1, path)
    out += _rv_i(0, zero, a2) + _rv_i(0, zero, a3) + _rv_i(56, zero, a7) + ecall  # openat
    out += la(a1, buf)
    out += _rv_i(64, zero, a2) + _rv_i(63, zero, a7) + ecall                       # read
    out += _rv_i(0, a0, a2) + _rv_i(1, zero, a0)
    out += la(a1, buf)
    out += _rv_i(64, zero, a7) + ecall                                             # write
    out += _rv_i(0, zero, a0) + _rv_i(93, zero, a7) + ecall                        # exit
    return out


def _s390x(at: int, path: int, buf: int) -> bytes:
    out = b""

    def larl(r: int, target: int) -> bytes:
        return bytes([0xC0, r << 4]) + struct.pack(">i", (target - (at + len(out))) // 2)

    def lghi(r: int, v: int) -> bytes:
        return bytes([0xA7, (r << 4) | 0x9]) + struct.pack(">h", v)

    def svc(n: int) -> bytes:
        return bytes([0x0A, n])

    out += larl(2, path)
    out += lghi(3, 0) + svc(5)                      # open(path, O_RDONLY) -> r2
    out += larl(3, buf)
    out += lghi(4, 64) + svc(3)                     # read(r2, buf, 64) -> r2
    out += bytes([0xB9, 0x04, 0x00, 0x42])          # lgr r4, r2
    out += lghi(2, 1)
    out += larl(3, buf)
    out += svc(4)                                   # write(1, buf, n)
    out += lghi(2, 0) + svc(1)                      # exit(0)
    return out


def _ppc64le(at: int, path: int, buf: int) -> bytes:
    def w(v: int) -> bytes:
        return struct.pack("<I", v)

    def li(r: int, v: int) -> bytes:
        return w((14 << 26) | (r << 21) | (v & 0xFFFF))

    def la(r: int, addr: int) -> bytes:  # lis r, hi; ori r, r, lo
        return w((15 << 26) | (r << 21) | (addr >> 16)) + w((24 << 26) | (r << 21) | (r << 16) | (addr & 0xFFFF))

    sc = w(0x44000002)
    mr_r5_r3 = w((31 << 26) | (3 << 21) | (5 << 16) | (3 << 11) | (444 << 1))
    return b"".join([
        la(3, path), li(4, 0), li(0, 5), sc,          # open
        la(4, buf), li(5, 64), li(0, 3), sc,          # read(r3 = fd)
        mr_r5_r3, li(3, 1), la(4, buf), li(0, 4), sc,  # write
        li(3, 0), li(0, 1), sc,                        # exit
    ])


# qemu target -> (e_machine, EI_DATA, e_flags, code builder)
TARGETS = {
    "riscv64": (243, 1, 0, _riscv64),
    "s390x": (22, 2, 0, _s390x),
    "ppc64le": (21, 1, 2, _ppc64le),  # e_flags 2: ELFv2 ABI (entry is code, not a descriptor)
}


def cat64(target: str, path: str) -> bytes:
    """The i386_cat program for a 64-bit QEMU target of TARGETS."""
    machine, data, flags, build = TARGETS[target]
    order = "<" if data == 1 else ">"
    text_at = BASE64 + EHDR64 + PHDR64
    size = len(build(text_at, text_at, text_at))
    path_at = (text_at + size + 7) & ~7
    name = path.encode() + b"\0"
    filesz = path_at - BASE64 + len(name)
    buf_at = (BASE64 + filesz + 15) & ~15
    code = build(text_at, path_at, buf_at)
    ident = b"\x7fELF" + bytes([2, data, 1, 0]) + b"\0" * 8
    ehdr = ident + struct.pack(order + "HHIQQQIHHHHHH", 2, machine, 1, text_at, EHDR64, 0, flags,
                               EHDR64, PHDR64, 1, 0, 0, 0)
    phdr = struct.pack(order + "IIQQQQQQ", 1, 7, 0, BASE64, BASE64, filesz, buf_at - BASE64 + 64, 0x10000)
    body = ehdr + phdr + code
    return body + b"\0" * (path_at - BASE64 - len(body)) + name
