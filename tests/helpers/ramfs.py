"""Run a command with a ramfs mounted at a directory: a real filesystem that refuses user xattrs.

ramfs answers every user xattr call with EOPNOTSUPP, like tmpfs before Linux 6.6, NFS,
Lustre or most FUSE filesystems, and (unlike FUSE) it can be mounted without root,
inside a user namespace. As root only a private mount namespace is made; as a user,
a user namespace that maps the user to itself, so the command still runs unprivileged
(its capabilities in the namespace end at exec).

    python -m tests.helpers.ramfs MOUNTPOINT -- COMMAND...
    in_ramfs(MOUNTPOINT, [COMMAND...]) -> the argv that does it
"""

from __future__ import annotations

import ctypes
import os
import sys
from pathlib import Path

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18


def in_ramfs(mountpoint: str | os.PathLike[str], argv: list[str]) -> list[str]:
    """The argv that runs `argv` with a ramfs at `mountpoint` (made if missing)."""
    return [sys.executable, "-m", "tests.helpers.ramfs", os.fspath(mountpoint), "--", *argv]


def takes_user_xattrs(path: str | os.PathLike[str]) -> bool:
    """Whether the filesystem holding `path` lets a user xattr be set on it."""
    try:
        os.setxattr(path, "user.probe", b"1")
    except OSError:
        return False
    os.removexattr(path, "user.probe")
    return True


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def enter_namespaces(libc: ctypes.CDLL) -> None:
    """A private mount namespace; as a user, in a user namespace mapping the user to itself."""
    uid, gid = os.geteuid(), os.getegid()
    flags = CLONE_NEWNS | (CLONE_NEWUSER if uid != 0 else 0)
    _check(libc.unshare(flags), "unshare")
    if uid != 0:
        Path("/proc/self/setgroups").write_text("deny")
        Path("/proc/self/uid_map").write_text(f"{uid} {uid} 1")
        Path("/proc/self/gid_map").write_text(f"{gid} {gid} 1")
    _check(libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "mount --make-rprivate /")


def _enter(mountpoint: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    enter_namespaces(libc)
    _check(libc.mount(b"ramfs", mountpoint.encode(), b"ramfs", 0, b"mode=0755"), "mount ramfs")
    os.chown(mountpoint, os.geteuid(), os.getegid())


def main(args: list[str]) -> int:
    if len(args) < 3 or args[1] != "--":
        print("usage: python -m tests.helpers.ramfs MOUNTPOINT -- COMMAND...", file=sys.stderr)
        return 2
    os.makedirs(args[0], exist_ok=True)
    _enter(os.path.abspath(args[0]))
    os.execvp(args[2], args[2:])
    return 127


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
