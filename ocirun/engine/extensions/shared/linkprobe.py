"""Whether a rootfs refuses hard links (the link2symlink extension's automatic mode):
kept apart from the extension so that deciding costs no import of it."""

from __future__ import annotations

import errno
import os

from ocirun.engine.extensions.shared.sigsysprobe import catching_sigsys


def link2symlink_needed(rootfs: str) -> bool:
    """Probe: does link() work in this rootfs? (Android's SELinux says EACCES; a
    seccomp policy may answer SIGSYS.)

    The host's own root is never probed (nor emulated by default): no file is
    created in `/` just to ask.
    """
    if os.path.realpath(rootfs) == "/":
        return False
    probe = os.path.join(rootfs, f".ocirun-link-probe-{os.getpid()}-{os.urandom(4).hex()}")
    try:
        fd = os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except OSError:
        return False  # cannot even create a file: nothing to decide here
    os.close(fd)
    try:
        with catching_sigsys() as trapped:
            try:
                os.link(probe, probe + ".l")
            except OSError as e:
                refused = e.errno in (errno.EACCES, errno.EPERM)
            else:
                refused = False
        if trapped:
            return True  # a seccomp policy's SIGSYS (the call did not run)
        if not refused:
            os.unlink(probe + ".l")
        return refused
    finally:
        os.unlink(probe)
