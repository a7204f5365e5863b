"""File locks: POSIX record locks for the stores, flock(2) for per-container files.

`file_lock` takes POSIX record locks (`fcntl.lockf`) on small files: unlike
flock(2) they also work across machines on NFS. POSIX locks belong to a process,
not to a file descriptor, so two threads of one process would not exclude each
other; a per-path threading lock is taken first for that case.

`flocked` takes flock(2) locks, which belong to an open file: a process holding
one (a running container's run.lock) keeps it until its descriptor closes, and a
killed process loses it at once. Never mix the two kinds on one file.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from ocirun.errors import OcirunError


@contextlib.contextmanager
def flocked(path: Path, mode: int = fcntl.LOCK_EX) -> Iterator[int]:
    """Hold a flock on `path` (created if needed) for the block; yields its descriptor."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, mode)
        yield fd
    finally:
        os.close(fd)


# Process-wide threading locks keyed by lock file path (see module docstring).
_THREAD_LOCKS: dict[str, threading.Lock] = {}
_THREAD_LOCKS_GUARD = threading.Lock()


def _thread_lock(path: Path) -> threading.Lock:
    with _THREAD_LOCKS_GUARD:
        return _THREAD_LOCKS.setdefault(str(path), threading.Lock())


# Shared locks held by this process: path -> [fd, holders]. POSIX locks belong to the
# process and closing ANY descriptor of the file drops them, so threads share one fd.
_SHARED: dict[str, list[int]] = {}


def _forget_after_fork() -> None:
    """A forked child holds none of its parent's POSIX locks (nor its thread locks)."""
    _SHARED.clear()
    _THREAD_LOCKS.clear()


os.register_at_fork(after_in_child=_forget_after_fork)


@contextlib.contextmanager
def file_lock(path: Path, shared: bool = False, blocking: bool = True) -> Iterator[bool]:
    """Hold a POSIX lock on `path` (created if needed); yields False if not blocking and busy.

    Exclusive locks exclude other threads (a threading lock) and processes (lockf).
    Shared locks are counted per process, so threads may hold them together; an
    exclusive request while this process holds the shared lock counts as busy
    (lockf would silently convert it instead).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if shared:
        with _shared_lock(path, blocking) as got:
            yield got
        return
    tlock = _thread_lock(path)
    if not tlock.acquire(blocking):
        yield False
        return
    try:
        if str(path) in _SHARED:
            yield False
            return
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            try:
                _lockf(fd, fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB)
            except (BlockingIOError, PermissionError):
                yield False
                return
            except OSError as exc:
                raise _lock_error(path, exc) from None
            try:
                yield True
            finally:
                fcntl.lockf(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
    finally:
        tlock.release()


def _lockf(fd: int, op: int) -> None:
    """fcntl.lockf, retrying EDEADLK.

    The kernel's deadlock detection sees processes, not threads: two pulls whose
    download threads each hold one blob lock and wait for the other's get EDEADLK,
    although every holder releases without waiting on anything (no thread here holds
    one blob lock while waiting for another). Waiting a little and asking again is right.
    """
    delay = 0.005
    while True:
        try:
            fcntl.lockf(fd, op)
            return
        except OSError as exc:
            if exc.errno != errno.EDEADLK:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


def _lock_error(path: Path, exc: OSError) -> OcirunError:
    """ENOLCK and friends: a filesystem without POSIX locks (NFS without lockd)."""
    return OcirunError(
        f"cannot lock {path}: {exc.strerror} (the store needs POSIX file locks; "
        "on NFS run the lock daemon or put the store elsewhere with --root)"
    )


@contextlib.contextmanager
def _shared_lock(path: Path, blocking: bool) -> Iterator[bool]:
    key = str(path)
    with _thread_lock(path):  # one thread at a time takes or drops the process's lock
        entry = _SHARED.get(key)
        if entry is None:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                _lockf(fd, fcntl.LOCK_SH if blocking else fcntl.LOCK_SH | fcntl.LOCK_NB)
            except (BlockingIOError, PermissionError):
                os.close(fd)
                entry = None
            except OSError as exc:
                os.close(fd)
                raise _lock_error(path, exc) from None
            else:
                entry = _SHARED[key] = [fd, 0]
        if entry is not None:
            entry[1] += 1
    if entry is None:
        yield False
        return
    try:
        yield True
    finally:
        with _thread_lock(path):
            entry[1] -= 1
            if entry[1] == 0:
                del _SHARED[key]
                fcntl.lockf(entry[0], fcntl.LOCK_UN)
                os.close(entry[0])
