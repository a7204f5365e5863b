"""Whether this host refuses SysV IPC (the sysvipc extension's automatic mode): kept
apart from the extension so that asking costs no import of it at every start."""

from __future__ import annotations

import ctypes
import errno
import os
import signal

_IPC_PRIVATE = 0  # (sysvipc/abi.py has them all; importing it would load the extension)
_IPC_RMID = 0


def sysvipc_needed() -> bool:
    """True if this host refuses SysV IPC: a probe shmget(IPC_PRIVATE) fails with ENOSYS
    or EPERM (a SIGSYS from a seccomp policy is caught for the probe's length)."""
    from ocirun.engine.syscalls import names

    try:
        numbers = names(os.uname().machine)
    except KeyError:
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    try:
        old = signal.signal(signal.SIGSYS, lambda *_: None)
    except ValueError:  # not the main thread
        old = None
    try:
        ident = libc.syscall(numbers["shmget"], _IPC_PRIVATE, 4096, 0o600)
        err = ctypes.get_errno()
    finally:
        if old is not None:
            signal.signal(signal.SIGSYS, old)
    if ident >= 0:
        libc.syscall(numbers["shmctl"], ident, _IPC_RMID, None)
        return False
    return err in (errno.ENOSYS, errno.EPERM)
