"""Where a container's placeholder directories keep their "not materialised yet" mark.

A user xattr (`user.ocirun.lazy`) when the filesystem takes one: it travels with
a renamed placeholder and costs one getxattr per lookup. Many filesystems refuse
user xattrs with EOPNOTSUPP (tmpfs before Linux 6.6, NFS, Lustre, GPFS, most FUSE
filesystems); a tree there keeps the mark in a file inside the placeholder
(`.ocirun-lazy`), which travels with renames too. The guest never sees that file:
the resolver materialises a directory (and removes the file) before anything
looks into it or lists it.

The kind is decided once per tree, from its top directory: a tree never mixes both.
"""

from __future__ import annotations

import contextlib
import errno
import os

TYPE_CHECKING = False  # typing's, without importing typing (start-up time)
if TYPE_CHECKING:
    from typing import Protocol
else:
    Protocol = object  # typing's Protocol matters to type checkers only (start-up time)

LAZY_XATTR = "user.ocirun.lazy"
MARK_FILE = ".ocirun-lazy"
_REFUSED = (errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS)


class LazyMarks(Protocol):
    """Set, read and clear the mark of a placeholder directory."""

    def get(self, path: str) -> bytes | None:
        """The mark's value; None if `path` is not a placeholder.

        OSError if `path` cannot be examined (missing, no permission).
        """
        ...

    def put(self, path: str, value: bytes) -> None: ...

    def clear(self, path: str) -> None: ...


class XattrMarks:
    """The mark is an xattr on the directory itself."""

    def get(self, path: str) -> bytes | None:
        try:
            return os.getxattr(path, LAZY_XATTR, follow_symlinks=False)
        except OSError as exc:
            if exc.errno == errno.ENODATA:
                return None
            raise

    def put(self, path: str, value: bytes) -> None:
        os.setxattr(path, LAZY_XATTR, value, follow_symlinks=False)

    def clear(self, path: str) -> None:
        os.removexattr(path, LAZY_XATTR, follow_symlinks=False)


class FileMarks:
    """The mark is a small file inside the (still empty) placeholder directory."""

    def get(self, path: str) -> bytes | None:
        try:
            fd = os.open(os.path.join(path, MARK_FILE), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            os.lstat(path)  # the directory itself missing: OSError like XattrMarks
            return None
        try:
            return os.read(fd, 8192)
        finally:
            os.close(fd)

    def put(self, path: str, value: bytes) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(os.path.join(path, MARK_FILE), flags, 0o600)
        try:
            os.write(fd, value)
        finally:
            os.close(fd)

    def clear(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(path, MARK_FILE))


def xattrs_refused(path: str) -> bool:
    """True if the filesystem holding the directory `path` refuses user xattrs."""
    try:
        os.getxattr(path, LAZY_XATTR, follow_symlinks=False)
    except OSError as exc:
        return exc.errno in _REFUSED
    return False


def marks_for(root: str) -> LazyMarks:
    """The marks a tree rooted at the existing directory `root` uses."""
    return FileMarks() if xattrs_refused(root) else XattrMarks()
