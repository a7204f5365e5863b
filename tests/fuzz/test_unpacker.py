"""The tar/whiteout unpacker, fuzzed: random layers of files, directories, symlinks,
hard links, whiteouts and opaque markers with hostile names and targets. Each layer
either unpacks or is refused with OcirunError, and nothing is ever written outside
the destination tree."""

from __future__ import annotations

import io
import os
import tarfile
import tempfile
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from layers.blobs import BlobStore
from layers.unpack import LayerSpec, unpack_layers
from ocirun.errors import OcirunError
from tests.layers.tarbuild import compress, sha256

PARTS = ["a", "b", "dir", "..", ".", "", ".wh.a", ".wh.b", ".wh..wh..opq", "outside", "x" * 30]
name_st = st.lists(st.sampled_from(PARTS), min_size=1, max_size=4).map("/".join) | st.sampled_from(
    ["/etc/passwd", "../outside/pwned", "/", "./a", "a//b", "../../x"])
target_st = st.sampled_from(["a", "b", "/", "..", "../outside", "../../outside/pwned", "/etc", "dir/../..", "a/b", ""])
entry_st = st.tuples(st.sampled_from(["file", "dir", "symlink", "hardlink", "fifo"]), name_st, target_st,
                     st.integers(0, 0o7777))


def _tar(entries) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for kind, name, target, mode in entries:
            info = tarfile.TarInfo(name)
            info.mode = mode
            data = b""
            if kind == "file":
                data = f"content of {name}\n".encode()
                info.size = len(data)
            elif kind == "dir":
                info.type = tarfile.DIRTYPE
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, target
            elif kind == "hardlink":
                info.type, info.linkname = tarfile.LNKTYPE, target
            else:
                info.type = tarfile.FIFOTYPE
            tar.addfile(info, io.BytesIO(data) if data else None)
    return buf.getvalue()


def _snapshot(path: Path) -> set[tuple[str, int]]:
    out = set()
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            out.add((p, os.lstat(p).st_mtime_ns))
    return out


@given(st.lists(st.lists(entry_st, max_size=8), min_size=1, max_size=3), st.sampled_from(["gzip", "zstd", "none"]))
def test_hostile_layers_stay_inside_the_tree(layers, how):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        outside = root / "outside"
        outside.mkdir()
        (outside / "canary").write_text("untouched")
        store = BlobStore(root / "store")
        specs = []
        for entries in layers:
            raw = _tar(entries)
            blob = compress(raw, how) if how != "none" else raw
            store.ingest_bytes(sha256(blob), blob)
            specs.append(LayerSpec(sha256(blob), sha256(raw)))
        before = _snapshot(outside) | {(str(p), 0) for p in root.iterdir()}
        try:
            unpack_layers(store, specs, root / "tree", root / "ownership")
        except OcirunError as exc:
            assert "\n" not in exc.message
        assert _snapshot(outside) | {(str(p), 0) for p in root.iterdir()} <= before | {
            (str(root / "tree"), 0), (str(root / "ownership"), 0)}
        assert (outside / "canary").read_text() == "untouched"
        os.chmod(root, 0o700)
        _unblock(root / "tree")


def _unblock(tree: Path) -> None:
    """Make the tree's real directories (never a symlink's target: the layer's
    symlinks point anywhere, / included) writable, so the cleanup can remove it."""
    for dirpath, dirnames, _ in os.walk(tree):
        for d in dirnames:
            p = os.path.join(dirpath, d)
            if not os.path.islink(p):
                os.chmod(p, 0o700)
