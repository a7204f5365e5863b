"""The error a guest path lookup fails with: an OSError that carries the kernel's errno.

The engine turns it into `-errno` for the syscall (skipping the syscall), so the
guest sees exactly what the kernel would have said for the same path.
"""

from __future__ import annotations

import errno as _errno
import os

PATH_MAX = 4096  # a path of PATH_MAX bytes or more (NUL excluded) is ENAMETOOLONG


class GuestPathError(OSError):
    """A guest path that cannot resolve: ENOENT, ENOTDIR, ELOOP, ENAMETOOLONG, EACCES, ..."""

    def __init__(self, errno: int, guest_path: str = ""):
        if guest_path:
            super().__init__(errno, os.strerror(errno), guest_path)
        else:
            super().__init__(errno, os.strerror(errno))

    @classmethod
    def from_oserror(cls, exc: OSError, guest_path: str) -> GuestPathError:
        """Re-raise a host OSError under the guest path (never leak the host path)."""
        return cls(exc.errno or _errno.EIO, guest_path)


def check_length(guest_path: str) -> None:
    """ENAMETOOLONG for a path of PATH_MAX bytes or more, as the kernel's getname."""
    if len(guest_path) >= PATH_MAX // 4 and len(os.fsencode(guest_path)) >= PATH_MAX:
        raise GuestPathError(_errno.ENAMETOOLONG, guest_path[:64] + "...")
