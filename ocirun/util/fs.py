"""File helpers: removing trees with read-only directories, atomic writes, tree sizes,
sparse new files.

An image or container tree holds 0555 directories (/proc, /sys, /usr/lib/...).
Their owner can still chmod them, so removal makes each directory writable before
emptying it, and never follows a symlink (everything is done relative to directory fds).
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path


def rmtree_at(dir_fd: int | None, name: str) -> None:
    """Remove `name` (file, symlink or directory tree) relative to `dir_fd`, chmodding as needed."""
    try:
        st = os.lstat(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(name, dir_fd=dir_fd)
        return
    if st.st_mode & 0o700 != 0o700:
        _chmod_at(dir_fd, name, 0o700)
    fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        with os.scandir(fd) as it:
            children = [(e.name, e.is_dir(follow_symlinks=False)) for e in it]
        for child, is_dir in children:
            if is_dir:
                rmtree_at(fd, child)
            else:
                os.unlink(child, dir_fd=fd)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=dir_fd)


def _chmod_at(dir_fd: int | None, name: str, mode: int) -> None:
    """chmod a directory we know is not a symlink (Linux has no lchmod)."""
    fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


def rmtree(path: str | os.PathLike[str]) -> None:
    """Remove a whole tree that may contain read-only directories; no error if absent."""
    path = os.fspath(path)
    parent, name = os.path.split(os.path.abspath(path))
    try:
        fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        rmtree_at(fd, name)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, mode: int = 0o644, sync: bool = True) -> None:
    """Write a file under a temporary name in the same directory, then rename it in.

    Readers see the old or the new file, never a part. The temporary file is 0600
    until it is complete, so `mode` 0600 data is never readable by others. `sync`
    flushes it to disk first (records that must survive a crash); state rewritten
    often and rebuilt anyway may skip that.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if sync:
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def writable_dir(path: str | os.PathLike[str]) -> Iterator[None]:
    """Make a directory we own writable for the time of an update (0555 dirs of images)."""
    mode = os.lstat(path).st_mode
    if os.geteuid() == 0 or mode & 0o300 == 0o300:
        yield
        return
    os.chmod(path, stat.S_IMODE(mode) | 0o300)
    try:
        yield
    finally:
        os.chmod(path, stat.S_IMODE(mode))


def tree_size(path: str | os.PathLike[str]) -> int:
    """Bytes used by the regular files of a tree (hardlinked files counted once)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            try:
                st = os.lstat(os.path.join(dirpath, f))
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                key = (st.st_dev, st.st_ino)
                if st.st_nlink > 1:
                    if key in seen:
                        continue
                    seen.add(key)
                total += st.st_size
    return total


COPY_CHUNK = 1 << 20  # what write_new_file's callers read at a time
_ZERO_CHUNK = bytes(COPY_CHUNK)


def write_new_file(path: str, chunks: Iterable[bytes], mode: int, mtime_ns: int, owner: tuple[int, int] | None) -> int:
    """Create a new file (never through a symlink), write it, then owner, mode and mtime.

    Whole chunks of zeros become holes, so a sparse or zero-filled file in a layer
    takes no disk space beyond its data."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(path, flags, 0o600)
    try:
        written = 0
        for chunk in chunks:
            if len(chunk) == COPY_CHUNK and chunk == _ZERO_CHUNK:
                written = os.lseek(fd, COPY_CHUNK, os.SEEK_CUR)
                continue
            written += _write_all(fd, chunk)
        if written != os.fstat(fd).st_size:
            os.ftruncate(fd, written)  # the file ends in a hole
        if owner is not None:
            try:
                os.fchown(fd, *owner)
            except OSError:
                pass
        os.fchmod(fd, mode)  # after chown and write, which clear setuid bits
        os.utime(fd, ns=(mtime_ns, mtime_ns))
    finally:
        os.close(fd)
    return written


def _write_all(fd: int, data: bytes) -> int:
    view = memoryview(data)
    total = 0
    while total < len(view):
        total += os.write(fd, view[total:])
    return total
