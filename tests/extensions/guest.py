"""Running guest commands for the extension tests through `ocirun proot`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.helpers import ocirun_env

# What a package manager needs from the host (PRoot's -S set, minus /tmp).
BINDS = ("-b", "/proc", "-b", "/dev", "-b", "/sys", "-b", "/etc/hosts", "-b", "/etc/resolv.conf")
GUEST_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "LANG": "C",
    "LC_ALL": "C",
    "DEBIAN_FRONTEND": "noninteractive",
}


LAUNCHER = [sys.executable, "-m", "ocirun", "proot"]


def proot(rootfs: Path | str, *command: str, opts: tuple[str, ...] = (), binds=BINDS,
          env: dict[str, str] | None = None, timeout: float = 120,
          ) -> subprocess.CompletedProcess:
    """Run COMMAND in ROOTFS with extension options OPTS; output captured as text."""
    full_env = ocirun_env({**GUEST_ENV, **(env or {})})
    argv = [*LAUNCHER, "-r", str(rootfs), *binds, *opts, *command]
    return subprocess.run(argv, capture_output=True, text=True, env=full_env, timeout=timeout,
                          stdin=subprocess.DEVNULL, cwd="/")


def sh(rootfs: Path | str, script: str, *opts: str, **kw) -> subprocess.CompletedProcess:
    """`sh -c SCRIPT` in the guest; fails the test with both streams if it exits non-zero."""
    proc = proot(rootfs, "/bin/sh", "-c", script, opts=opts, **kw)
    assert proc.returncode == 0, (
        f"guest exited {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}")
    return proc


def unprivileged() -> bool:
    return os.getuid() != 0
