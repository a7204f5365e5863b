"""The syscalls the fake root handles, as tables (name -> argument positions)."""

from __future__ import annotations

import ctypes
import os
import struct
from collections.abc import Callable

from ocirun.engine import syscalls
from ocirun.engine.extensions.fake_id0.creds import Creds
from ocirun.engine.extensions.shared.statbuf import STAT_LAYOUTS, StatLayout
from ocirun.util.linux import AT_EACCESS, AT_REMOVEDIR, O_ACCMODE, O_CREAT, O_PATH, O_TRUNC  # noqa: F401
from ocirun.util.records import dataclass

RENAME_EXCHANGE = 2
ST_RDONLY = 1

_libc = ctypes.CDLL(None, use_errno=True)


@dataclass(frozen=True)
class StatAbi:
    """How the tracer stats a file for a guest of one architecture: the syscall that
    fills that architecture's `struct stat`, and where the fields -0 reads are."""

    fstatat_nr: int  # newfstatat: the syscall glibc's stat()/lstat()/fstatat() make
    layout: StatLayout
    head: struct.Struct  # st_dev, st_ino, st_uid, st_gid in one unpack (the hot path)


def stat_abi(arch: str) -> StatAbi:
    """The StatAbi of `arch` (a key of ocirun.engine.arch.ARCHES), from its syscall
    table and its struct stat layout: x86_64's asm/stat.h, aarch64's asm-generic."""
    layout = STAT_LAYOUTS[arch]
    # st_dev and st_ino are the first two u64 on every architecture; uid and gid are adjacent
    head = struct.Struct(f"<QQ{layout.uid - 16}xII")
    return StatAbi(syscalls.names(arch)["newfstatat"], layout, head)

# OCIRUN_FAKEROOT_STAT=exit: fix stat results at the exit stop instead of answering in the tracer
_STAT_AT_EXIT = os.environ.get("OCIRUN_FAKEROOT_STAT", "") == "exit"

_ID_GETTERS = {
    "getuid": lambda c: c.ruid,
    "geteuid": lambda c: c.euid,
    "getgid": lambda c: c.rgid,
    "getegid": lambda c: c.egid,
    # i386's old 16-bit calls: an id above 65535 reads as the overflow id, as from the kernel
    "getuid16": lambda c: _low16(c.ruid),
    "geteuid16": lambda c: _low16(c.euid),
    "getgid16": lambda c: _low16(c.rgid),
    "getegid16": lambda c: _low16(c.egid),
}
def _low16(value: int) -> int:
    return value if value < 0x10000 else 65534  # high2lowuid(): the overflowuid


_ID_SETTERS: dict[str, Callable[..., int]] = {
    "setuid": Creds.setuid,
    "setgid": Creds.setgid,
    "setreuid": Creds.setreuid,
    "setregid": Creds.setregid,
    "setresuid": Creds.setresuid,
    "setresgid": Creds.setresgid,
    "setfsuid": Creds.setfsuid,
    "setfsgid": Creds.setfsgid,
}
_ID_NARGS = {"setuid": 1, "setgid": 1, "setfsuid": 1, "setfsgid": 1, "setreuid": 2,
             "setregid": 2, "setresuid": 3, "setresgid": 3}

# name: (path arg or None for fd-based, dirfd/fd arg, uid arg, gid arg, flags arg, follows)
_CHOWN = {
    "chown": (0, None, 1, 2, None, True),
    "lchown": (0, None, 1, 2, None, False),
    "fchown": (None, 0, 1, 2, None, True),
    "fchownat": (1, 0, 2, 3, 4, True),
}
# name: (path arg, dirfd arg, mode arg, flags arg)
_CHMOD = {
    "chmod": (0, None, 1, None),
    "fchmod": (None, 0, 1, None),
    "fchmodat": (1, 0, 2, None),
    "fchmodat2": (1, 0, 2, 3),
}
_MKNOD = {"mknod": (0, None, 1, 2), "mknodat": (1, 0, 2, 3)}
# name: index of the stat buffer argument, struct kind
_STAT = {"stat": (1, "stat"), "lstat": (1, "stat"), "fstat": (1, "stat"),
         "newfstatat": (2, "stat"), "statx": (4, "statx"),
         # i386 programs on x86_64 (their old `stat` family's struct is left to the kernel)
         "stat64": (1, "stat64"), "lstat64": (1, "stat64"), "fstat64": (1, "stat64"), "fstatat64": (2, "stat64")}
_ACCESS = {"access": (0, None, 1, None), "faccessat": (1, 0, 2, None),
           "faccessat2": (1, 0, 2, 3)}
# name: (path arg, flags arg or None, fixed flags)
_OPEN = {"open": (0, 1, 0), "openat": (1, 2, 0), "creat": (0, None, 0o1101), "openat2": (1, None, -1)}
# name: path args whose parent directory must be writable
_NAMESPACE = {
    "mkdir": (0,), "mkdirat": (1,), "rmdir": (0,), "unlink": (0,), "unlinkat": (1,),
    "mknod": (0,), "mknodat": (1,), "symlink": (1,), "symlinkat": (2,),
    "link": (1,), "linkat": (3,), "rename": (0, 1), "renameat": (1, 3), "renameat2": (1, 3),
}
# name: path arg of a newly created inode (ownership recorded for non-default fsuid/fsgid)
_CREATES = {"mkdir": 0, "mkdirat": 1, "mknod": 0, "mknodat": 1, "symlink": 1, "symlinkat": 2,
            "open": 0, "openat": 1, "creat": 0, "openat2": 1}
_RENAMES = {"rename": (0, 1), "renameat": (1, 3), "renameat2": (1, 3)}
_UNLINKS = {"unlink": 0, "unlinkat": 1, "rmdir": 0}
_XATTR_SET = {"setxattr": 1, "lsetxattr": 1, "fsetxattr": 1}
_ALWAYS_OK = {"sethostname", "setdomainname"}
PR_GET_KEEPCAPS, PR_SET_KEEPCAPS = 7, 8
_CAP_V1, _CAP_V2, _CAP_V3 = 0x19980330, 0x20071026, 0x20080522


def _full_caps() -> tuple[int, int]:
    """The capability bits a real root has on this kernel (low word, high word)."""
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            last = int(f.read())
    except (OSError, ValueError):
        last = 40
    return 0xFFFFFFFF, (1 << (last - 31)) - 1 if last >= 32 else 0

SYSCALLS = frozenset(
    set(_ID_GETTERS) | set(_ID_SETTERS) | set(_CHOWN) | set(_CHMOD) | set(_MKNOD) | set(_STAT)
    | set(_ACCESS) | set(_OPEN) | set(_NAMESPACE) | set(_XATTR_SET) | _ALWAYS_OK
    | {"getresuid", "getresgid", "getgroups", "setgroups", "chroot", "truncate", "chdir",
       "capget", "capset", "prctl"}
)
