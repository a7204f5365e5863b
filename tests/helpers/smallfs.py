"""Run a command with a small tmpfs mounted at a directory: a disk that fills up.

As root a private mount namespace is made; as a user, a user namespace mapping the
user to itself (see tests/helpers/ramfs.py), so the command runs unprivileged.

    python -m tests.helpers.smallfs MOUNTPOINT SIZE -- COMMAND...
    in_tmpfs(MOUNTPOINT, "8m", [COMMAND...]) -> the argv that does it
"""

from __future__ import annotations

import ctypes
import os
import sys

from tests.helpers.ramfs import _check, enter_namespaces


def in_tmpfs(mountpoint: str | os.PathLike[str], size: str, argv: list[str]) -> list[str]:
    return [sys.executable, "-m", "tests.helpers.smallfs", os.fspath(mountpoint), size, "--", *argv]


def main(args: list[str]) -> int:
    if len(args) < 4 or args[2] != "--":
        print("usage: python -m tests.helpers.smallfs MOUNTPOINT SIZE -- COMMAND...", file=sys.stderr)
        return 2
    mountpoint = os.path.abspath(args[0])
    os.makedirs(mountpoint, exist_ok=True)
    libc = ctypes.CDLL(None, use_errno=True)
    enter_namespaces(libc)
    opts = f"size={args[1]},mode=0755".encode()
    _check(libc.mount(b"tmpfs", mountpoint.encode(), b"tmpfs", 0, opts), "mount tmpfs")
    os.execvp(args[3], args[3:])
    return 127


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
