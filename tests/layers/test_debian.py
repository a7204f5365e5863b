"""A real image: the Debian bookworm tree (mmdebstrap fixture) as a gzip layer, unpacked
and compared entry by entry with the tree it was made from."""

from __future__ import annotations

import hashlib
import os
import stat
import zlib
from pathlib import Path

import pytest

from layers.blobs import BlobStore
from layers.unpack import LayerSpec, unpack_layers


def _gzip_file(src: Path, dest: Path) -> tuple[str, str]:
    """gzip `src` into `dest` (level 1: fast); returns (blob digest, diff_id)."""
    comp = zlib.compressobj(1, zlib.DEFLATED, 31)
    hb, hr = hashlib.sha256(), hashlib.sha256()
    with open(src, "rb") as fin, open(dest, "wb") as fout:
        while chunk := fin.read(1 << 20):
            hr.update(chunk)
            out = comp.compress(chunk)
            hb.update(out)
            fout.write(out)
        out = comp.flush()
        hb.update(out)
        fout.write(out)
    return "sha256:" + hb.hexdigest(), "sha256:" + hr.hexdigest()


def _digest(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    except PermissionError:
        return None


def _snapshot(root: Path) -> dict[str, tuple]:
    out = {}
    links: dict[tuple[int, int], str] = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            p = os.path.join(dirpath, name)
            rel = os.path.relpath(p, root)
            st = os.lstat(p)
            kind = stat.S_IFMT(st.st_mode)
            extra = None
            if stat.S_ISLNK(st.st_mode):
                extra = os.readlink(p)
            elif stat.S_ISREG(st.st_mode):
                first = links.setdefault((st.st_dev, st.st_ino), rel) if st.st_nlink > 1 else rel
                extra = (st.st_size, _digest(p), first if first != rel else None)
            mtime = int(st.st_mtime) if not stat.S_ISLNK(st.st_mode) else None
            if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) or stat.S_ISFIFO(st.st_mode):
                continue  # skipped by design (mknod needs privilege)
            out[rel] = (kind, stat.S_IMODE(st.st_mode), extra, mtime)
    return out


def _strip(v: tuple) -> tuple:
    kind, mode, extra, mtime = v
    if isinstance(extra, tuple):
        extra = extra[:2]  # hardlink groups may name a different first member
    return kind, mode, extra, mtime


def _from_tar(tar: Path, tree: Path) -> dict[str, tuple]:
    """What the tarball says (types, modes, link targets, sizes, mtimes); file contents
    from the fixture tree it was made of (the tree itself was chmod a+rX afterwards)."""
    import tarfile

    kinds = {tarfile.DIRTYPE: stat.S_IFDIR, tarfile.SYMTYPE: stat.S_IFLNK}
    out = {}
    with tarfile.open(tar) as tf:
        members = tf.getmembers()
    by_name = {}
    for m in members:
        rel = os.path.normpath(m.name)
        if rel == "." or m.ischr() or m.isblk() or m.isfifo():
            continue
        by_name[rel] = m
        if m.islnk():
            m = by_name[os.path.normpath(m.linkname)]
        kind = kinds.get(m.type, stat.S_IFREG)
        extra = m.linkname if m.issym() else None
        if kind == stat.S_IFREG:
            extra = (m.size, _digest(str(tree / rel)))
        out[rel] = (kind, m.mode & 0o7777, extra, int(m.mtime) if not m.issym() else None)
    return out


@pytest.mark.slow
def test_debian_tree_unpacks_identically(debian_rootfs, debian_rootfs_tar, tmp_path):
    store = BlobStore(tmp_path / "store")
    blob = tmp_path / "layer.gz"
    digest, diff_id = _gzip_file(debian_rootfs_tar, blob)
    store.ingest_file(digest, blob)
    blob.unlink()
    dest = tmp_path / "rootfs"
    stats = unpack_layers(store, [LayerSpec(digest, diff_id)], dest, tmp_path / "ownership", notice=lambda m: None)
    assert stats.files > 3000
    got = _snapshot(dest)
    want = _from_tar(debian_rootfs_tar, debian_rootfs)
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    assert not missing and not extra, (missing[:10], extra[:10])
    diffs = [(k, want[k], got[k]) for k in want if want[k] != _strip(got[k])]
    assert not diffs, diffs[:10]
    assert os.path.isfile(dest / "usr/bin/bash")
    assert stat.S_IMODE(os.lstat(dest / "usr/bin/passwd").st_mode) & stat.S_ISUID
