"""getcwd and chdir: the guest's working directory (see ocirun/engine/tracee.py)."""

from __future__ import annotations

import errno
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ocirun.engine.syscall import Syscall
    from ocirun.engine.tracee import Tracee

ENC = "surrogateescape"


def enter_getcwd(t: Tracee, sc: Syscall) -> None:
    """Answered by the tracer: the guest path of /proc/PID/cwd."""
    try:
        host = os.readlink(f"/proc/{t.pid}/cwd")
    except OSError:
        host = ""
    if host.endswith(" (deleted)"):
        sc.skip(-errno.ENOENT)
        return
    cwd = (t.view.to_guest(host) if host else None) or t.guest_cwd()
    data = cwd.encode("utf-8", ENC) + b"\0"
    if len(data) > sc.args[1]:
        sc.skip(-errno.ERANGE)
        return
    t.write(sc.args[0], data)
    sc.skip(len(data))


def enter_chdir(t: Tracee, sc: Syscall) -> None:
    """chdir, fchdir: the cached cwd is re-read from /proc/PID/cwd at the next relative path."""
    t.invalidate_cwd()
