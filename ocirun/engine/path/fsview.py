"""The few host filesystem queries the path resolver makes, behind one small interface.

Every query of the resolver goes through an `FsView`, so a caller can wrap it
(e.g. the runner's container view that materialises directories lazily, or a
counting wrapper in the tests). Keep it to these two calls: the resolver never
stats, opens or lists anything else.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # typing's, without importing typing (start-up time)
if TYPE_CHECKING:
    from typing import Protocol
else:
    Protocol = object  # typing's Protocol matters to type checkers only (start-up time)

# Kinds returned by FsView.lstat_kind. Plain ints: compared on every path component.
MISSING = 0  # ENOENT: nothing there (a creat/mkdir target, or an error if used as a directory)
FILE = 1  # anything that is neither a directory nor a symlink (regular, fifo, socket, device)
DIR = 2
LINK = 3

_S_IFMT = 0o170000
_S_IFDIR = 0o040000
_S_IFLNK = 0o120000


class FsView(Protocol):
    """Host queries of the resolver. Paths are host paths (str, os.fsdecode'd bytes)."""

    def lstat_kind(self, host_path: str) -> int:
        """lstat(host_path) reduced to MISSING/FILE/DIR/LINK.

        Returns MISSING for ENOENT only; any other failure (EACCES, ENAMETOOLONG,
        ENOTDIR, ELOOP...) raises OSError with its errno, which the resolver
        reports to the guest.
        """
        ...

    def readlink(self, host_path: str) -> str:
        """The symlink's target exactly as stored (never resolved on the host)."""
        ...


class HostFs:
    """FsView over the real host filesystem (os.lstat / os.readlink)."""

    __slots__ = ()

    def lstat_kind(self, host_path: str) -> int:
        try:
            mode = os.lstat(host_path).st_mode & _S_IFMT
        except FileNotFoundError:
            return MISSING
        if mode == _S_IFDIR:
            return DIR
        if mode == _S_IFLNK:
            return LINK
        return FILE

    def readlink(self, host_path: str) -> str:
        return os.readlink(host_path)
