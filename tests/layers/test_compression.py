"""Layer streams: multi-member gzip, several zstd frames, xz/bzip2, empty layers, corrupt data."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma

import pytest
import zstandard

from layers.blobs import BlobStore
from layers.unpack import LayerSpec, unpack_layers
from registry.compression import LayerFormatError, LayerReader
from tests.layers.tarbuild import make_tar, sha256

RAW = make_tar([("dir", "d"), ("file", "d/a", "a" * 5000), ("file", "d/b", "b")])


def _read_all(blob: bytes) -> LayerReader:
    r = LayerReader(io.BytesIO(blob))
    out = bytearray()
    while chunk := r.read(777):
        out += chunk
    assert bytes(out) == RAW
    return r


@pytest.mark.parametrize(
    "blob",
    [
        gzip.compress(RAW[:3000]) + gzip.compress(RAW[3000:]),  # pigz/multi-member
        zstandard.ZstdCompressor().compress(RAW[:4000]) + zstandard.ZstdCompressor().compress(RAW[4000:]),
        lzma.compress(RAW),
        bz2.compress(RAW),
        RAW,
    ],
    ids=["gzip-members", "zstd-frames", "xz", "bzip2", "plain"],
)
def test_streams_decode_fully_and_hash_diff_id(blob):
    r = _read_all(blob)
    assert r.diff_id == sha256(RAW)


def test_corrupt_gzip_is_a_format_error():
    blob = bytearray(gzip.compress(RAW))
    blob[20:40] = b"\xff" * 20
    with pytest.raises(LayerFormatError):
        LayerReader(io.BytesIO(bytes(blob))).drain()


def _zstd_streamed(data: bytes) -> bytes:
    """Frames as a streaming writer makes them: no content size, many blocks, a checksum."""
    out = io.BytesIO()
    with zstandard.ZstdCompressor(level=1, write_checksum=True).stream_writer(out, closefd=False) as w:
        w.write(data)
    return out.getvalue()


BIG = RAW * 40 + bytes(range(256)) * 2000  # several zstd blocks, compressible and not


@pytest.mark.parametrize(
    "blob",
    [
        gzip.compress(BIG),
        zstandard.ZstdCompressor().compress(BIG[:9000]) + zstandard.ZstdCompressor().compress(BIG[9000:]),
        _zstd_streamed(BIG),
        lzma.compress(BIG),
        bz2.compress(BIG),
    ],
    ids=["gzip", "zstd-frames", "zstd-streamed", "xz", "bzip2"],
)
def test_a_truncated_stream_is_a_format_error_at_any_cut(blob):
    """A blob cut short anywhere (a partial download, a damaged file) must not decode
    quietly to a shorter tar; zstandard's reader alone would end without a word."""
    r = LayerReader(io.BytesIO(blob))
    assert r.read() == BIG
    for cut in sorted({7, 9, 17, len(blob) // 3, len(blob) // 2, len(blob) - 5, len(blob) - 1}):
        with pytest.raises(LayerFormatError):
            LayerReader(io.BytesIO(blob[:cut])).drain()


def test_zstd_skippable_frames_are_passed_over():
    skippable = (0x184D2A53).to_bytes(4, "little") + (6).to_bytes(4, "little") + b"ocirun"
    blob = skippable + zstandard.ZstdCompressor().compress(RAW) + skippable
    assert LayerReader(io.BytesIO(blob)).read() == RAW
    with pytest.raises(LayerFormatError):
        LayerReader(io.BytesIO(blob[:-2])).drain()


def test_empty_blob_and_empty_tar_are_empty_layers(tmp_path):
    store = BlobStore(tmp_path / "s")
    empty_tar = gzip.compress(b"\0" * 1024)
    store.ingest_bytes(sha256(b""), b"")
    store.ingest_bytes(sha256(empty_tar), empty_tar)
    stats = unpack_layers(
        store, [LayerSpec(sha256(b""), sha256(b"")), LayerSpec(sha256(empty_tar), sha256(b"\0" * 1024))], tmp_path / "r"
    )
    assert stats.layers == 2 and stats.entries == 0
    assert list((tmp_path / "r").iterdir()) == []


def test_garbage_layer_rejected(tmp_path):
    store = BlobStore(tmp_path / "s")
    junk = b"this is not a tar archive at all" * 40
    store.ingest_bytes(sha256(junk), junk)
    with pytest.raises(LayerFormatError, match="not a"):
        unpack_layers(store, [LayerSpec(sha256(junk), None)], tmp_path / "r")
