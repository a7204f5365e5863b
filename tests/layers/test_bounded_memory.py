"""Bounded memory: a layer is read in constant memory whatever it expands to.

Each case runs in a child process whose peak RSS the kernel reports (wait4's
rusage). The layers are small blobs of GiBs of zeros (tests/layers/bigzero.py): the
decoder used to keep a whole decompressed 1 MiB input step, ~1 GiB here.
"""

from __future__ import annotations

import json
import os
import sys

import pytest

from tests.helpers import ocirun_argv, ocirun_env
from tests.helpers.rss import MiB, run_measured
from tests.layers.bigzero import PIECE, sparse_layer, tar_head_tail, zeros_layer

LIMIT = 150 * MiB
GiB = 1 << 30

_DRAIN = """
import sys
from registry.compression import LayerReader
with open(sys.argv[1], "rb") as f:
    r = LayerReader(f)
    r.drain()
print(r.kind, r.uncompressed_size)
"""

_UNPACK = """
import hashlib, sys
from pathlib import Path
from layers.blobs import BlobStore
from layers.unpack import LayerSpec, unpack_layers
blob = Path(sys.argv[1]).read_bytes()
store = BlobStore(Path(sys.argv[2]))
digest = "sha256:" + hashlib.sha256(blob).hexdigest()
store.ingest_bytes(digest, blob)
del blob
unpack_layers(store, [LayerSpec(digest, None)], Path(sys.argv[3]))
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    "kind,size", [("zstd", 2 * GiB), ("gzip", 512 * MiB), ("xz", 256 * MiB), ("bzip2", 256 * MiB)]
)
def test_decoder_streams_in_bounded_memory(tmp_path, kind, size):
    blob, _ = zeros_layer(kind, size)
    assert len(blob) < 8 * MiB
    (tmp_path / "blob").write_bytes(blob)
    m = run_measured([sys.executable, "-c", _DRAIN, tmp_path / "blob"], env=ocirun_env())
    m.check(LIMIT, f"{kind} layer of {size >> 20} MiB")
    assert m.stdout.split() == [kind, str(size + 512 + 1024)]


@pytest.mark.slow
def test_zeros_and_sparse_files_unpack_in_bounded_memory_and_stay_sparse(tmp_path):
    size = 2 * GiB
    marks = {12345: b"begin", 1 * GiB + 7: b"middle", size - 3: b"end"}
    blobs = {"zeros": zeros_layer("zstd", 1 * GiB, name="zeros")[0], "sparse": sparse_layer(tmp_path, size, marks)}
    for name, blob in blobs.items():
        (tmp_path / f"{name}.blob").write_bytes(blob)
        dest = tmp_path / f"{name}-tree"
        m = run_measured(
            [sys.executable, "-c", _UNPACK, tmp_path / f"{name}.blob", tmp_path / f"{name}-store", dest],
            env=ocirun_env(),
        )
        m.check(LIMIT, f"unpacking the {name} layer")
        st = (dest / name).stat()
        assert st.st_size == (1 * GiB if name == "zeros" else size)
        assert st.st_blocks * 512 <= 8 * MiB, f"{name}: {st.st_blocks * 512} bytes on disk: holes were written out"
    with open(tmp_path / "sparse-tree" / "sparse", "rb") as f:
        for off, data in marks.items():
            f.seek(off)
            assert f.read(len(data)) == data


# -- the same bound through the CLI: load, pull, export -------------------------------------


def _layout(dest, blob: bytes, diff_id: str, media_type: str) -> None:
    from tests.registry.regserver import LayoutWriter

    w = LayoutWriter(dest)
    layer = w.blob(blob, media_type)
    config = {
        "architecture": "amd64", "os": "linux", "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }
    cfg = w.blob(json.dumps(config).encode(), "application/vnd.oci.image.config.v1+json")
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "config": cfg, "layers": [layer]}
    top = w.blob(json.dumps(manifest).encode(), "application/vnd.oci.image.manifest.v1+json")
    top["annotations"] = {"org.opencontainers.image.ref.name": "big"}
    w.write_index([top])


def _measured_cli(root, *args, what: str) -> str:
    m = run_measured(ocirun_argv("--root", root, *args), env=ocirun_env())
    m.check(LIMIT, what)
    return m.stdout


def _docker_save_gz(dest, size: int) -> None:
    """A gzip'd `docker save` archive whose layer.tar is `size` (+ tar overhead) bytes of
    plain tar: the archive is small, what it holds is big."""
    import gzip
    import hashlib
    import tarfile

    layer_head, layer_tail = tar_head_tail(size, "zeros")
    layer_size = len(layer_head) + size + len(layer_tail)
    h = hashlib.sha256(layer_head)
    zeros = bytes(PIECE)
    for _ in range(size // PIECE):
        h.update(zeros)
    h.update(layer_tail)
    diff_id = "sha256:" + h.hexdigest()
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/bin/sh"]},
                         "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()
    cname = hashlib.sha256(config).hexdigest() + ".json"
    manifest = json.dumps([{"Config": cname, "RepoTags": ["big:save"], "Layers": ["l/layer.tar"]}]).encode()

    def header(name: str, n: int) -> bytes:
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = n, 0o644, 0
        return info.tobuf(format=tarfile.PAX_FORMAT)

    def file(name: str, data: bytes) -> bytes:
        return header(name, len(data)) + data + bytes(-len(data) % 512)

    gz = lambda b: gzip.compress(b, compresslevel=9, mtime=0)  # noqa: E731
    with open(dest, "wb") as out:
        out.write(gz(file(cname, config) + header("l/layer.tar", layer_size) + layer_head))
        member = gz(zeros)
        for _ in range(size // PIECE):
            out.write(member)
        tail = layer_tail + bytes(-layer_size % 512) + file("manifest.json", manifest) + bytes(1024)
        out.write(gz(tail))


@pytest.mark.slow
def test_load_pull_export_of_a_big_image_in_bounded_memory(tmp_path):
    from tests.registry.regserver import push, start_registry

    blob, diff_id = zeros_layer("zstd", 512 * MiB, diff_id=True)
    _layout(tmp_path / "layout", blob, diff_id, "application/vnd.oci.image.layer.v1.tar+zstd")
    root = tmp_path / "root"

    _measured_cli(root, "load", "-i", tmp_path / "layout", what="load of an OCI layout")
    _docker_save_gz(tmp_path / "save.tar.gz", 256 * MiB)
    assert os.path.getsize(tmp_path / "save.tar.gz") < 4 * MiB
    out = _measured_cli(root, "load", "-i", tmp_path / "save.tar.gz", what="load of a big docker-save archive")
    assert "big:save" in out

    reg = start_registry(tmp_path / "reg")
    try:
        push(tmp_path / "layout", reg, "big/zeros:1", tag="big")
        _measured_cli(tmp_path / "root2", "pull", "-q", f"{reg.host}/big/zeros:1", what="pull")
    finally:
        reg.stop()

    cid = _measured_cli(root, "create", "big:save", "/bin/sh", what="create").strip()
    _measured_cli(root, "export", "-o", os.devnull, cid, what="export")
