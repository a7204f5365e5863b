"""Content-addressed blob store: `blobs/<algorithm>/<hex>` under the store root.

Nothing unverified ever sits at a blob's final path: downloads go to a stable
partial file (so an interrupted pull can resume with an HTTP Range request),
are verified by the writer, then renamed into place atomically. A rename is
atomic on one filesystem, so partials live under the same root (`tmp/partial/`).

Locks are POSIX record locks (`fcntl.lockf`) on small files under `locks/`:
unlike flock(2) they also work across machines on NFS. POSIX locks belong to a
process, not to a file descriptor, so two threads of one process would not
exclude each other; a per-path threading lock is taken first for that case.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import re
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from ocirun.errors import OcirunError

# algorithm -> hex length; the OCI image-spec's registered algorithms.
ALGORITHMS: dict[str, int] = {"sha256": 64, "sha512": 128}
_HEX = re.compile(r"^[0-9a-f]+$")
_CHUNK = 1 << 20


class BlobError(OcirunError):
    """A blob is malformed, missing or does not match its digest."""


def parse_digest(digest: str) -> tuple[str, str]:
    """Split `sha256:<hex>` and refuse anything else (the hex becomes a file name)."""
    algo, sep, hexpart = digest.partition(":")
    if not sep or algo not in ALGORITHMS:
        raise BlobError(f"unsupported digest {digest!r}: expected sha256:<hex> or sha512:<hex>")
    if len(hexpart) != ALGORITHMS[algo] or not _HEX.match(hexpart):
        raise BlobError(f"invalid digest {digest!r}")
    return algo, hexpart


def hasher(digest: str) -> hashlib._Hash:
    """A fresh hash object of the digest's algorithm."""
    return hashlib.new(parse_digest(digest)[0])


def digest_file(path: Path, algorithm: str = "sha256") -> str:
    """`algorithm:<hex>` of a file's contents, read in large chunks."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return f"{algorithm}:{h.hexdigest()}"


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


class BlobStore:
    """Verified blobs under `root/blobs`, partials under `root/tmp/partial`, locks under `root/locks`.

    Implements registry.types.BlobSink (has, partial_path, commit, lock) plus
    ingestion helpers that verify before storing.
    """

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)
        self.blob_dir = self.root / "blobs"
        self.partial_dir = self.root / "tmp" / "partial"
        self.lock_dir = self.root / "locks"

    # -- the BlobSink protocol ------------------------------------------------

    def path(self, digest: str) -> Path:
        """Final path of a blob (which may not exist)."""
        algo, hexpart = parse_digest(digest)
        return self.blob_dir / algo / hexpart

    def has(self, digest: str) -> bool:
        """True when the blob is stored (only verified blobs are ever renamed in)."""
        return self.path(digest).is_file()

    def partial_path(self, digest: str) -> Path:
        """Stable file for a resumable download of `digest`, on the store's filesystem."""
        algo, hexpart = parse_digest(digest)
        self.partial_dir.mkdir(parents=True, exist_ok=True)
        return self.partial_dir / f"{algo}-{hexpart}"

    def commit(self, digest: str, partial: Path) -> Path:
        """Rename an already-verified `partial` into place; idempotent if already stored."""
        final = self.path(digest)
        final.parent.mkdir(parents=True, exist_ok=True)
        partial = Path(partial)
        if final.is_file():
            with contextlib.suppress(FileNotFoundError):
                if partial.resolve() != final.resolve():
                    partial.unlink()
            return final
        try:
            os.chmod(partial, 0o444)  # blobs are immutable; also guards against edits
            os.replace(partial, final)
        except FileNotFoundError:
            if final.is_file():  # another process committed the same partial first
                return final
            raise BlobError(f"cannot commit blob {digest}: {partial} is gone") from None
        return final

    @contextlib.contextmanager
    def lock(self, digest: str) -> Iterator[None]:
        """Exclusive lock on one blob, for two processes (or threads) fetching it."""
        algo, hexpart = parse_digest(digest)
        with file_lock(self.lock_dir / f"blob-{algo}-{hexpart}.lock"):
            yield

    # -- ingestion that verifies ----------------------------------------------

    def ingest_bytes(self, digest: str, data: bytes) -> Path:
        """Store `data` after checking it matches `digest`."""
        h = hasher(digest)
        h.update(data)
        self._check(digest, h)
        if self.has(digest):
            return self.path(digest)
        tmp = self._tempfile(digest)
        try:
            with open(tmp, "wb") as f:
                f.write(data)
            return self.commit(digest, tmp)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    def ingest_file(self, digest: str, src: str | os.PathLike[str] | BinaryIO) -> Path:
        """Copy a file (path or open binary file) into the store, verifying while copying."""
        if self.has(digest):
            return self.path(digest)
        h = hasher(digest)
        tmp = self._tempfile(digest)
        try:
            with contextlib.ExitStack() as stack:
                fin = src if hasattr(src, "read") else stack.enter_context(open(src, "rb"))
                fout = stack.enter_context(open(tmp, "wb"))
                while chunk := fin.read(_CHUNK):  # type: ignore[union-attr]
                    h.update(chunk)
                    fout.write(chunk)
            self._check(digest, h)
            return self.commit(digest, tmp)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    def verify(self, digest: str) -> bool:
        """Re-hash a stored blob; False when missing or its bytes do not match."""
        p = self.path(digest)
        if not p.is_file():
            return False
        algo, hexpart = parse_digest(digest)
        return digest_file(p, algo) == f"{algo}:{hexpart}"

    # -- reading and housekeeping ----------------------------------------------

    def open(self, digest: str) -> BinaryIO:
        """Open a stored blob for reading (BlobError when missing)."""
        try:
            return open(self.path(digest), "rb")
        except FileNotFoundError:
            raise BlobError(f"blob {digest} is not in the store") from None

    def read_bytes(self, digest: str) -> bytes:
        """Contents of a small stored blob (a manifest or config)."""
        with self.open(digest) as f:
            return f.read()

    def size(self, digest: str) -> int:
        return self.path(digest).stat().st_size

    def digests(self) -> Iterator[str]:
        """Every stored blob's digest."""
        for algo in ALGORITHMS:
            d = self.blob_dir / algo
            if d.is_dir():
                for entry in os.scandir(d):
                    if len(entry.name) == ALGORITHMS[algo] and _HEX.match(entry.name):
                        yield f"{algo}:{entry.name}"

    def remove(self, digest: str) -> int:
        """Delete a blob; returns the bytes freed (0 if it was not there)."""
        p = self.path(digest)
        try:
            size = p.stat().st_size
            p.unlink()
        except FileNotFoundError:
            return 0
        return size

    def _tempfile(self, digest: str) -> Path:
        """A private temporary file next to the partials (same filesystem as blobs/)."""
        algo, hexpart = parse_digest(digest)
        self.partial_dir.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f"ingest-{algo}-{hexpart[:12]}-", dir=self.partial_dir)
        os.close(fd)
        return Path(name)

    @staticmethod
    def _check(digest: str, h: hashlib._Hash) -> None:
        algo, hexpart = parse_digest(digest)
        if h.hexdigest() != hexpart:
            raise BlobError(f"blob {digest} does not match its digest (got {algo}:{h.hexdigest()})")
