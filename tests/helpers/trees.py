"""Small root filesystems made on the fly, and cheap copies of the cached ones."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

# Where the amd64 busybox comes from: Debian's busybox-static (scripts/deps/apt.txt).
HOST_BUSYBOX = Path("/bin/busybox")

PASSWD = """\
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
user:x:1000:1000:user:/home/user:/bin/sh
"""

GROUP = """\
root:x:0:
daemon:x:1:
users:x:100:user
nogroup:x:65534:
user:x:1000:
"""

_applets: list[str] | None = None


def busybox_applets() -> list[str]:
    """Applet paths relative to / (``bin/sh``, ``usr/bin/env``...), from the host busybox.

    The arm64 and armhf busybox-static packages are the same Debian version and
    configuration, so the host's list serves them too (they cannot run here without QEMU).
    """
    global _applets
    if _applets is None:
        out = subprocess.run(
            [str(HOST_BUSYBOX), "--list-full"], check=True, capture_output=True, text=True
        ).stdout
        _applets = [line.strip() for line in out.splitlines() if line.strip()]
    return _applets


def make_busybox_tree(dest: Path, busybox: Path = HOST_BUSYBOX) -> Path:
    """A busybox root filesystem at ``dest``: bin/busybox, one absolute symlink per applet
    (as ``busybox --install -s`` makes them: they only work if resolved inside the guest),
    etc/passwd and etc/group, tmp/ 1777, root/ 0700, home/user, empty dev/ proc/ sys/."""
    dest.mkdir(parents=True, exist_ok=True)
    for d in ("bin", "sbin", "usr/bin", "usr/sbin", "etc", "dev", "proc", "sys", "var",
              "home/user"):
        (dest / d).mkdir(parents=True, exist_ok=True)
    shutil.copy2(busybox, dest / "bin/busybox")
    os.chmod(dest / "bin/busybox", 0o755)
    for applet in busybox_applets():
        link = dest / applet
        if not link.exists() and not link.is_symlink():
            link.symlink_to("/bin/busybox")
    (dest / "etc/passwd").write_text(PASSWD)
    (dest / "etc/group").write_text(GROUP)
    tmp = dest / "tmp"
    tmp.mkdir(exist_ok=True)
    os.chmod(tmp, 0o1777)
    root = dest / "root"
    root.mkdir(exist_ok=True)
    os.chmod(root, 0o700)
    return dest


def copy_tree(src: Path, dest: Path) -> Path:
    """A real, independent copy of ``src`` at ``dest`` (reflinks where the filesystem has
    them): safe for a guest that writes, unlike a hardlink farm. As a non-root user the
    copy is owned by that user (cp cannot keep root's ownership), as a rootless unpack is."""
    dest.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        ["cp", "-a", "--reflink=auto", f"{src}/.", str(dest)],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"cp -a {src} {dest} failed: {proc.stderr.strip()}")
    return dest
