"""Run a command with some /proc files hidden, as Android's SELinux hides them from apps.

Each file gets a unix socket bind-mounted over it in a private mount namespace (as a
user: in a user namespace mapping the user to itself, so the command still runs
unprivileged): open() then fails with ENXIO, for root too.

    python -m tests.helpers.hideproc /proc/stat,/proc/uptime -- COMMAND...
    hide_argv(["/proc/stat", ...], [COMMAND...])
"""

from __future__ import annotations

import ctypes
import os
import socket
import sys
import tempfile

from tests.helpers.ramfs import enter_namespaces

MS_BIND = 0x1000


def hide_argv(paths: list[str], argv: list[str]) -> list[str]:
    return [sys.executable, "-m", "tests.helpers.hideproc", ",".join(paths), "--", *argv]


def main(args: list[str]) -> int:
    if len(args) < 3 or args[1] != "--":
        print("usage: python -m tests.helpers.hideproc PATH,... -- COMMAND...", file=sys.stderr)
        return 2
    libc = ctypes.CDLL(None, use_errno=True)
    enter_namespaces(libc)
    sock_path = os.path.join(tempfile.mkdtemp(prefix="hideproc-"), "s")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(sock_path)
    for path in args[0].split(","):
        if libc.mount(sock_path.encode(), path.encode(), None, MS_BIND, None) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"bind over {path}: {os.strerror(err)}")
    os.execvp(args[2], args[2:])
    return 127


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
