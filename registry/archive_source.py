"""Reading archives safely: an archive's files by relative path (a directory or a
tar, plain or compressed), and blobs copied into a sink only when their bytes match
their digest. Used by registry.archive (`ocirun load`, docker-archive:/oci: pulls)."""

from __future__ import annotations

import hashlib
import posixpath
import re
import tarfile
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import IO, Any

from ocirun.errors import OcirunError
from registry.manifest import store_bytes
from registry.types import BlobSink

CHUNK = 1 << 20


# ---------------------------------------------------------------- sources


class Source:
    """Read-only access to the files of an archive, by relative POSIX path."""

    label: str

    def exists(self, rel: str) -> bool:
        raise NotImplementedError

    def open(self, rel: str) -> AbstractContextManager[IO[bytes]]:
        raise NotImplementedError

    def size(self, rel: str) -> int:
        raise NotImplementedError

    def read(self, rel: str, limit: int = 64 << 20) -> bytes:
        with self.open(rel) as f:
            data = f.read(limit + 1)
        if len(data) > limit:
            raise OcirunError(f"{self.label}: {rel} is too large")
        return data

    def close(self) -> None:
        pass


def clean_rel(rel: str) -> str:
    """Normalise a member name; refuse absolute names and `..`."""
    norm = posixpath.normpath(rel)
    if norm.startswith("/") or norm == ".." or norm.startswith("../"):
        raise OcirunError(f"archive names a file outside itself: {rel!r}")
    return norm


class DirSource(Source):
    def __init__(self, root: Path):
        self.root = root.resolve()
        self.label = str(root)

    def _path(self, rel: str) -> Path:
        p = (self.root / clean_rel(rel)).resolve()
        if p != self.root and self.root not in p.parents:
            raise OcirunError(f"{self.label}: {rel!r} points outside the layout")
        return p

    def exists(self, rel: str) -> bool:
        return self._path(rel).is_file()

    @contextmanager
    def open(self, rel: str) -> Iterator[IO[bytes]]:
        try:
            f = open(self._path(rel), "rb")
        except FileNotFoundError:
            raise OcirunError(f"{self.label}: {rel} is missing") from None
        with f:
            yield f

    def size(self, rel: str) -> int:
        return self._path(rel).stat().st_size


# magic -> opener of a decompressing stream (docker load accepts all of these)
def _decompressor(head: bytes) -> Any:
    if head[:2] == b"\x1f\x8b":
        import gzip

        return gzip.open
    if head[:3] == b"BZh":
        import bz2

        return bz2.open
    if head[:6] == b"\xfd7zXZ\x00":
        import lzma

        return lzma.open
    if head[:4] == b"\x28\xb5\x2f\xfd":
        import zstandard

        return lambda p: zstandard.ZstdDecompressor().stream_reader(open(p, "rb"), closefd=True)
    return None


class TarSource(Source):
    """A tar archive; a compressed one is decompressed once into an unnamed temp file.

    Random access into a compressed stream re-decompresses from the start on every
    backward seek (once per layer here), so one sequential pass to a spool is cheaper.
    """

    def __init__(self, path: Path):
        self.label = str(path)
        self._spool: IO[bytes] | None = None
        try:
            with open(path, "rb") as f:
                opener = _decompressor(f.read(6))
            if opener is None:
                self.tar = tarfile.open(path, "r:")
            else:
                import shutil
                import tempfile

                self._spool = tempfile.TemporaryFile(prefix="ocirun-load-")
                with opener(path) as zin:
                    shutil.copyfileobj(zin, self._spool, CHUNK)
                self._spool.seek(0)
                self.tar = tarfile.open(fileobj=self._spool, mode="r:")
            self.members = {}
            for m in self.tar.getmembers():
                try:
                    self.members[clean_rel(m.name)] = m
                except OcirunError:
                    continue  # never reachable by name: ignored
        except (tarfile.TarError, OSError, EOFError, ValueError) as exc:
            if self._spool is not None:
                self._spool.close()
            raise OcirunError(f"cannot read archive {path}: {exc}") from None

    def _member(self, rel: str, depth: int = 0) -> tarfile.TarInfo:
        m = self.members.get(clean_rel(rel))
        if m is None:
            raise OcirunError(f"{self.label}: {rel} is missing from the archive")
        if (m.issym() or m.islnk()) and depth < 8:
            # docker save links duplicate layer.tar files to the first copy
            target = m.linkname if m.islnk() else posixpath.join(posixpath.dirname(m.name), m.linkname)
            return self._member(target, depth + 1)
        if not m.isfile():
            raise OcirunError(f"{self.label}: {rel} is not a regular file")
        return m

    def exists(self, rel: str) -> bool:
        try:
            self._member(rel)
            return True
        except OcirunError:
            return False

    @contextmanager
    def open(self, rel: str) -> Iterator[IO[bytes]]:
        f = self.tar.extractfile(self._member(rel))
        assert f is not None
        with f:
            yield f

    def size(self, rel: str) -> int:
        return self._member(rel).size

    def close(self) -> None:
        self.tar.close()
        if self._spool is not None:
            self._spool.close()


def open_source(path: Path) -> Source:
    if path.is_dir():
        return DirSource(path)
    if not path.exists():
        raise OcirunError(f"archive {path} does not exist")
    return TarSource(path)


# ---------------------------------------------------------------- verified copy


def ingest(src: Source, rel: str, digest: str, sink: BlobSink, size: int | None = None) -> bytes:
    """Copy `rel` into the sink as `digest`, hashing while copying; refuse a mismatch.

    Returns the blob's first bytes (to tell tar from gzip/zstd without reopening it).
    """
    if not re.fullmatch(r"sha256:[a-f0-9]{64}", digest):
        raise OcirunError(f"{src.label}: unsupported digest {digest!r}")
    if sink.has(digest):
        with src.open(rel) as f:
            return f.read(4)
    with sink.lock(digest):
        if sink.has(digest):
            with src.open(rel) as f:
                return f.read(4)
        partial = sink.partial_path(digest)
        partial.parent.mkdir(parents=True, exist_ok=True)
        h = hashlib.sha256()
        total = 0
        head = b""
        try:
            with src.open(rel) as fin, open(partial, "wb") as fout:
                while chunk := fin.read(CHUNK):
                    if not head:
                        head = chunk[:4]
                    h.update(chunk)
                    fout.write(chunk)
                    total += len(chunk)
        except (OSError, tarfile.TarError, EOFError) as exc:
            partial.unlink(missing_ok=True)
            raise OcirunError(f"{src.label}: cannot read {rel}: {exc}") from None
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        if "sha256:" + h.hexdigest() != digest or (size is not None and size >= 0 and total != size):
            partial.unlink(missing_ok=True)
            raise OcirunError(f"blob {digest} does not match its digest")
        sink.commit(digest, partial)
    return head


def store_digest_of(sink: BlobSink, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    store_bytes(sink, digest, data)
    return digest


def verified_read(src: Source, rel: str, digest: str) -> bytes:
    data = src.read(rel)
    if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
        raise OcirunError(f"blob {digest} does not match its digest")
    return data
