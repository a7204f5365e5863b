"""Whether this host refuses SysV IPC (the sysvipc extension's automatic mode): kept
apart from the extension so that asking costs no import of it at every start."""

from __future__ import annotations

import ctypes
import errno
import os

from ocirun.engine.extensions.shared.sigsysprobe import catching_sigsys

_IPC_PRIVATE = 0  # (sysvipc/abi.py has them all; importing it would load the extension)
_IPC_RMID = 0


def sysvipc_needed() -> bool:
    """True if this host refuses SysV IPC: a probe shmget(IPC_PRIVATE) fails with ENOSYS
    or EPERM, or a seccomp policy answers it with SIGSYS (Android's: caught for the
    probe's length; the call then returns whatever the kernel left in the register)."""
    from ocirun.engine.syscalls import names

    try:
        numbers = names(os.uname().machine)
    except KeyError:
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    with catching_sigsys() as trapped:
        ident = libc.syscall(numbers["shmget"], _IPC_PRIVATE, 4096, 0o600)
        err = ctypes.get_errno()
    if trapped:
        return True
    if ident >= 0:
        libc.syscall(numbers["shmctl"], ident, _IPC_RMID, None)
        return False
    return err in (errno.ENOSYS, errno.EPERM)
