"""Run a command on a host without a usable /tmp, as on Android (which has none).

In a private mount namespace (as a user: in a user namespace mapping the user to itself,
see ramfs.py) /tmp is covered by an empty filesystem mounted read-only: nothing can be
made in it, whoever asks (root too: EROFS). Only each KEEP, a directory under /tmp the
test needs (its tmp_path, and this checkout when it was cloned under /tmp: the code the
command imports), stays reachable at its own path, bound in before the cover became
read-only.

    python -m tests.helpers.notmp KEEP... -- COMMAND...
    without_tmp(KEEP, [COMMAND...]) -> the argv that does it
"""

from __future__ import annotations

import ctypes
import os
import sys
from pathlib import Path

from tests.helpers.ramfs import _check, enter_namespaces

MS_RDONLY = 1
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 0x4000

CHECKOUT = Path(__file__).resolve().parents[2]


def without_tmp(keep: str | os.PathLike[str], argv: list[str]) -> list[str]:
    """The argv that runs `argv` with /tmp unusable but for `keep` and this checkout."""
    return [sys.executable, "-m", "tests.helpers.notmp", os.fspath(keep), os.fspath(CHECKOUT), "--", *argv]


def _enter(keeps: list[str]) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
    enter_namespaces(libc)
    kept = [(keep, os.open(keep, os.O_PATH | os.O_DIRECTORY))  # reachable after /tmp is covered
            for keep in keeps if keep.startswith("/tmp/")]
    _check(libc.mount(b"notmp", b"/tmp", b"ramfs", 0, b"mode=0755"), "mount ramfs on /tmp")
    for keep, fd in kept:
        os.makedirs(keep, exist_ok=True)
        _check(libc.mount(f"/proc/self/fd/{fd}".encode(), keep.encode(), None, MS_BIND | MS_REC, None),
               f"bind {keep}")
        os.close(fd)
    _check(libc.mount(None, b"/tmp", None, MS_REMOUNT | MS_BIND | MS_RDONLY, None), "remount /tmp read-only")


def main(args: list[str]) -> int:
    if "--" not in args or args.index("--") in (0, len(args) - 1):
        print("usage: python -m tests.helpers.notmp KEEP... -- COMMAND...", file=sys.stderr)
        return 2
    cut = args.index("--")
    _enter([os.path.realpath(keep) for keep in args[:cut]])
    os.execvp(args[cut + 1], args[cut + 1:])
    return 127


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
