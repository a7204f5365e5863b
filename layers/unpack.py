"""Apply OCI/Docker layers, in order, to a fresh directory: each blob is checked
against its digest, streamed through its decompressor into a TreeWriter
(layers/treewriter.py: the entry rules), and its content checked against the
diff_id the image config promises."""

from __future__ import annotations

import errno
import json
import os
import sys
import tarfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from layers.blobs import BlobError, BlobStore, digest_file, parse_digest
from layers.treewriter import TreeWriter, UnpackStats
from ocirun.errors import OcirunError
from registry.compression import LayerFormatError, LayerReader


@dataclass
class LayerSpec:
    """One layer to apply: its blob digest and the diff_id the config promises (or None)."""

    digest: str
    diff_id: str | None = None
    media_type: str = ""



# -- whole layers -------------------------------------------------------------------


def verify_blob(blobs: BlobStore, digest: str) -> None:
    """Check a layer blob's bytes against its digest before any of it is unpacked."""
    path = blobs.path(digest)
    if not path.is_file():
        raise BlobError(f"layer {digest} is not in the store (pull the image again)")
    algo, _ = parse_digest(digest)
    got = digest_file(path, algo)
    if got != digest:
        raise BlobError(
            f"layer {digest} in the store does not match its digest (got {got}): "
            "run 'ocirun system check --repair', then pull the image again"
        )


def apply_layer(writer: TreeWriter, blob: Path, layer: LayerSpec) -> None:
    """Stream one layer blob into the tree and check its diff_id."""
    writer.begin_layer()
    with open(blob, "rb") as raw:
        reader = LayerReader(raw)
        writer.stats.compressed_bytes += os.fstat(raw.fileno()).st_size
        try:
            tar = tarfile.open(fileobj=reader, mode="r|", bufsize=1 << 16, errors="surrogateescape")
        except tarfile.ReadError as exc:
            reader.drain()
            if reader.uncompressed_size == 0:
                tar = None  # an empty blob: an empty layer
            else:
                raise LayerFormatError(f"layer {layer.digest} is not a tar archive: {exc}") from None
        if tar is not None:
            try:
                for member in tar:
                    writer.apply(member, tar)
                    tar.members.clear()  # stream mode keeps every member otherwise
                writer.flush()
            except (tarfile.TarError, EOFError) as exc:
                raise LayerFormatError(f"layer {layer.digest} is not a valid tar archive: {exc}") from None
            except OSError as exc:
                if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise OcirunError(f"no space left unpacking layer {layer.digest}") from None
                raise OcirunError(f"cannot unpack layer {layer.digest}: {exc}") from None
        reader.drain()
    if layer.diff_id and reader.diff_id != layer.diff_id:
        raise LayerFormatError(
            f"layer {layer.digest}: uncompressed content is {reader.diff_id}, "
            f"but the image config says {layer.diff_id}"
        )


def unpack_layers(
    blobs: BlobStore,
    layers: Iterable[LayerSpec],
    dest: Path,
    ownership_file: Path | None = None,
    notice: Callable[[str], None] | None = None,
) -> UnpackStats:
    """Apply `layers` in order into the new directory `dest` (which must not exist).

    The caller makes `dest` a temporary name and renames it into place afterwards;
    on any error the caller removes it (nothing half-unpacked is ever published).
    """
    os.mkdir(dest, 0o700)
    writer = TreeWriter(Path(dest))
    try:
        for layer in layers:
            verify_blob(blobs, layer.digest)
            apply_layer(writer, blobs.path(layer.digest), layer)
        writer.finish()
    finally:
        writer.close()
    if ownership_file is not None:
        ownership_file.write_text(json.dumps(writer.ownership_doc(), indent=1) + "\n")
    if writer.stats.skipped_special:
        (notice or _stderr_notice)(
            f"skipped {writer.stats.skipped_special} device node(s)/FIFO(s): creating them needs "
            "privilege (recorded in the image's ownership file)"
        )
    return writer.stats


def _stderr_notice(msg: str) -> None:
    print(f"ocirun: {msg}", file=sys.stderr)
