"""Linux ABI numbers Python's os module lacks, the same on x86_64 and aarch64.

The *at() family's flags and the open(2) flags below have one value on both
architectures (asm-generic); O_DIRECTORY and O_NOFOLLOW do not (x86_64: 0o200000,
0o400000; aarch64: 0o40000, 0o100000), so they belong to the per-architecture tables.
"""

from __future__ import annotations

# *at() system calls: the directory argument and flags
AT_FDCWD = -100
AT_SYMLINK_NOFOLLOW = 0x100
AT_REMOVEDIR = 0x200  # unlinkat
AT_EACCESS = 0x200  # faccessat (same bit as AT_REMOVEDIR: the call tells them apart)
AT_SYMLINK_FOLLOW = 0x400  # linkat
AT_EMPTY_PATH = 0x1000

# open(2) flags
O_ACCMODE = 0o3
O_CREAT = 0o100
O_EXCL = 0o200
O_TRUNC = 0o1000
O_PATH = 0o10000000

# keys of the ELF auxiliary vector (<elf.h>), which share the AT_ prefix
AT_NULL = 0
AT_UID = 11
AT_EUID = 12
AT_GID = 13
AT_EGID = 14
AT_HWCAP = 16
AT_SECURE = 23
