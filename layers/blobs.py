"""Content-addressed blob store: `blobs/<algorithm>/<hex>` under the store root.

Nothing unverified ever sits at a blob's final path: downloads go to a stable
partial file (so an interrupted pull can resume with an HTTP Range request),
are verified by the writer, then renamed into place atomically. A rename is
atomic on one filesystem, so partials live under the same root (`tmp/partial/`).

Locks are ocirun.util.locks.file_lock (POSIX record locks) on files under `locks/`.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ocirun.errors import OcirunError
from ocirun.util.locks import file_lock

TYPE_CHECKING = False  # typing's, without importing typing (start-up time)
if TYPE_CHECKING:  # (hashlib is imported where a blob is hashed: a cached run hashes none)
    import hashlib
    from typing import BinaryIO

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
    import hashlib

    return hashlib.new(parse_digest(digest)[0])


def digest_file(path: Path, algorithm: str = "sha256") -> str:
    """`algorithm:<hex>` of a file's contents, read in large chunks."""
    import hashlib

    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return f"{algorithm}:{h.hexdigest()}"


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
