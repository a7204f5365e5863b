"""Write an OCI layer blob (tar + gzip or zstd) from a list of entries, deterministically.

The entries come from `layers.diff` (a container's changes against its image) or
from a builder's COPY (files of a build context). The writer does not look at
the host's owners or modes: every entry says what the guest must see, so a
layer never carries the builder's real uid.

Determinism (the same entries give the same digests): entries are written in
the order given (callers sort), PAX format without user/group names, integer
mtimes clamped to SOURCE_DATE_EPOCH when one is given, gzip without a file name
or time stamp and in fixed blocks (`layers.pgzip`: the same bytes on any number of
cores), zstd without a content checksum or size header that could vary.
The blob is hashed while it is written (the digest) and so is the tar (the
diff_id the image config lists), then renamed into the blob store.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import tarfile
import tempfile
from dataclasses import dataclass, field

import zstandard

from layers.blobs import BlobStore
from layers.pgzip import ParallelGzip
from ocirun.errors import OcirunError

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"

# compression -> (OCI media type, Docker media type or None when Docker has none)
MEDIA_TYPES: dict[str, tuple[str, str | None]] = {
    "gzip": ("application/vnd.oci.image.layer.v1.tar+gzip", "application/vnd.docker.image.rootfs.diff.tar.gzip"),
    "zstd": ("application/vnd.oci.image.layer.v1.tar+zstd", None),
    "none": ("application/vnd.oci.image.layer.v1.tar", "application/vnd.docker.image.rootfs.diff.tar"),
}
_TAR_TYPES: dict[str, bytes] = {
    "file": tarfile.REGTYPE,
    "dir": tarfile.DIRTYPE,
    "symlink": tarfile.SYMTYPE,
    "hardlink": tarfile.LNKTYPE,
    "char": tarfile.CHRTYPE,
    "block": tarfile.BLKTYPE,
    "fifo": tarfile.FIFOTYPE,
    "whiteout": tarfile.REGTYPE,
    "opaque": tarfile.REGTYPE,
}
_CHUNK = 1 << 20
# gzip level 1 as go-containerregistry's layers (crane, ko): a few per cent bigger than
# level 6, three to four times faster; zstd's own default.
DEFAULT_LEVELS: dict[str, int] = {"gzip": 1, "zstd": 3}
LEVEL_RANGES: dict[str, tuple[int, int]] = {"gzip": (1, 9), "zstd": (1, 19)}


@dataclass
class Entry:
    """One layer entry, as the guest sees it.

    `name` is the path in the layer without a leading slash. `source` is the host
    file whose bytes a "file" entry carries; `link` the target of a symlink or
    the layer name of a hardlink's first link. `mode` holds permission bits only.
    """

    name: str
    kind: str  # file dir symlink hardlink char block fifo whiteout opaque
    uid: int = 0
    gid: int = 0
    mode: int = 0o644
    mtime: int = 0
    source: str | None = None
    size: int = 0
    link: str = ""
    rdev: tuple[int, int] = (0, 0)
    xattrs: dict[str, bytes] = field(default_factory=dict)


@dataclass(frozen=True)
class LayerBlob:
    """A layer now in the blob store."""

    digest: str  # of the compressed blob
    diff_id: str  # of the tar
    size: int
    compression: str
    entries: int

    def media_type(self, docker: bool = False) -> str:
        oci, dock = MEDIA_TYPES[self.compression]
        if docker:
            if dock is None:
                raise OcirunError(f"Docker's image format has no {self.compression} layers (use --format oci)")
            return dock
        return oci

    def descriptor(self, docker: bool = False) -> dict:
        return {"mediaType": self.media_type(docker), "digest": self.digest, "size": self.size}


def source_date_epoch(env: dict[str, str] | None = None) -> int | None:
    """SOURCE_DATE_EPOCH from the environment (reproducible-builds.org), or None."""
    text = (env if env is not None else os.environ).get("SOURCE_DATE_EPOCH", "").strip()
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        raise OcirunError(f"SOURCE_DATE_EPOCH={text!r} is not a number of seconds") from None
    if value < 0:
        raise OcirunError(f"SOURCE_DATE_EPOCH={text!r} is negative")
    return value


class _BlobSink:
    """A file-like the tar writes into: hashes the tar, compresses, hashes and stores the blob."""

    def __init__(self, fileobj, compression: str, level: int | None = None):
        self.out = fileobj
        self.compression = compression
        self.tar_hash = hashlib.sha256()
        self.blob_hash = hashlib.sha256()
        self.size = 0
        level = DEFAULT_LEVELS.get(compression, 0) if level is None else level
        if compression == "gzip":
            self._comp = ParallelGzip(level)  # mtime 0 and no name: the header is fixed
        elif compression == "zstd":
            self._comp = zstandard.ZstdCompressor(level=level, write_checksum=False).compressobj()
        elif compression == "none":
            self._comp = None
        else:
            raise OcirunError(f"unknown compression {compression!r} (gzip, zstd or none)")

    def _emit(self, data: bytes) -> None:
        if data:
            self.blob_hash.update(data)
            self.size += len(data)
            self.out.write(data)

    def write(self, data: bytes) -> int:
        self.tar_hash.update(data)
        self._emit(self._comp.compress(data) if self._comp is not None else bytes(data))
        return len(data)

    def close_stream(self) -> None:
        if self._comp is not None:
            self._emit(self._comp.flush())


def tarinfo(e: Entry, epoch: int | None) -> tarfile.TarInfo:
    """The tar header of an entry, as the layer carries it (mtime clamped to `epoch`)."""
    name = e.name
    if e.kind == "whiteout":
        head, _, base = name.rpartition("/")
        name = f"{head}/{WHITEOUT_PREFIX}{base}" if head else WHITEOUT_PREFIX + base
    elif e.kind == "opaque":
        name = f"{name}/{OPAQUE_MARKER}" if name else OPAQUE_MARKER
    if e.kind == "dir" and not name.endswith("/"):
        name += "/"
    info = tarfile.TarInfo(name)
    info.type = _TAR_TYPES[e.kind]
    meta = e.kind not in ("whiteout", "opaque")
    info.mode = stat.S_IMODE(e.mode) if meta else 0o644
    info.uid, info.gid = (e.uid, e.gid) if meta else (0, 0)
    info.uname = info.gname = ""
    mtime = int(e.mtime) if meta else (epoch or 0)
    info.mtime = min(mtime, epoch) if epoch is not None else mtime
    if e.kind in ("symlink", "hardlink"):
        info.linkname = e.link
    if e.kind in ("char", "block"):
        info.devmajor, info.devminor = e.rdev
    if e.kind == "file":
        info.size = e.size
    if e.xattrs and meta:
        info.pax_headers = {
            f"SCHILY.xattr.{k}": v.decode("utf-8", "surrogateescape") for k, v in sorted(e.xattrs.items())
        }
    return info


def _add_file(tar: tarfile.TarFile, info: tarfile.TarInfo, source: str) -> None:
    """Add a regular file; its size is what the entry says (read once, no race with stat)."""
    with open(source, "rb") as f:
        tar.addfile(info, _Exact(f, info.size, source))


class _Exact:
    """A reader that yields exactly `size` bytes, failing if the file shrank."""

    def __init__(self, f, size: int, source: str):
        self.f, self.left, self.source = f, size, source

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        data = self.f.read(n)
        if len(data) < n:
            raise OcirunError(f"{self.source} changed while it was being archived")
        self.left -= len(data)
        return data


def write_layer(
    entries: list[Entry],
    blobs: BlobStore,
    compression: str = "gzip",
    epoch: int | None = None,
    level: int | None = None,
) -> LayerBlob:
    """Archive `entries` (in their order) into a new blob in `blobs` (`level`: the
    compression level, DEFAULT_LEVELS when None)."""
    blobs.partial_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="ingest-layer-", dir=blobs.partial_dir)
    try:
        with os.fdopen(fd, "wb") as out:
            sink = _BlobSink(out, compression, level)
            tar = tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT, encoding="utf-8",
                               errors="surrogateescape")
            for e in entries:
                info = tarinfo(e, epoch)
                if e.kind == "file" and e.source is not None:
                    _add_file(tar, info, e.source)
                else:
                    if e.kind == "file":
                        info.size = 0
                    tar.addfile(info)
            tar.close()
            sink.close_stream()
        digest = "sha256:" + sink.blob_hash.hexdigest()
        with blobs.lock(digest):
            blobs.commit(digest, tmp)
    except OSError as exc:
        raise OcirunError(f"cannot write a layer: {exc}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return LayerBlob(digest, "sha256:" + sink.tar_hash.hexdigest(), sink.size, compression, len(entries))
