"""getcwd and chdir: the guest's working directory (see ocirun/engine/tracee.py)."""

from __future__ import annotations

import errno
import os

from ocirun.engine.path.errors import GuestPathError

TYPE_CHECKING = False  # typing's, without importing typing (start-up time)
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
    cwd = (t.cwd_of(host) if host else None) or t.guest_cwd()
    data = cwd.encode("utf-8", ENC) + b"\0"
    if len(data) > sc.args[1]:
        sc.skip(-errno.ERANGE)
        return
    t.write(sc.args[0], data)
    sc.skip(len(data))


def enter_chdir(t: Tracee, sc: Syscall) -> None:
    """chdir, fchdir: the cached cwd is re-read from /proc/PID/cwd at the next relative path.
    chdir by name remembers the canonical guest path asked for with its host directory:
    that name is used while the kernel's cwd is that directory (no exit stop: a failed
    chdir leaves the cwd elsewhere, where the name does not apply)."""
    guest = sc.guest_paths.get(0) if sc.name == "chdir" else None
    host = sc.host_paths.get(0)
    if guest is not None and host:
        try:
            named = t.view.translator.canonical(guest, t.guest_cwd(), True, t.tgid, t.pid)
            t.fs.name_cwd(os.path.normpath(host), named)
        except (GuestPathError, OSError):
            pass  # the kernel fails the call
    t.invalidate_cwd()
