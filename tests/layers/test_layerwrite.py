"""layers.diff + layers.layerwrite: a tree's changes as a layer, read back by the project's
unpacker and by GNU tar, deterministic, owners from the fake root (never the real uid)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from layers.blobs import BlobStore
from layers.diff import Owners, diff_tree
from layers.layerwrite import Entry, LayerBlob, source_date_epoch, write_layer
from layers.unpack import LayerSpec, unpack_layers
from ocirun.errors import OcirunError


@dataclass
class Rec:
    uid: int | None = None
    gid: int | None = None
    mode: int | None = None
    rdev: int | None = None


class FakeDB:
    """The fake-root database's read side, keyed by inode like the real one."""

    def __init__(self):
        self.recs: dict[tuple[int, int], Rec] = {}

    def set(self, path: Path, **kw) -> None:
        st = os.lstat(path)
        self.recs[(st.st_dev, st.st_ino)] = Rec(**kw)

    def get(self, dev: int, ino: int):
        return self.recs.get((dev, ino))


def _lower(root: Path) -> Path:
    (root / "etc").mkdir(parents=True)
    (root / "etc/keep").write_text("same\n")
    (root / "etc/change").write_text("old\n")
    (root / "etc/gone").write_text("bye\n")
    (root / "empty_me").mkdir()
    (root / "empty_me/a").write_text("a")
    (root / "empty_me/b").write_text("b")
    (root / "was_dir").mkdir()
    (root / "was_dir/x").write_text("x")
    (root / "link").symlink_to("etc/keep")
    (root / "etc/hosts").write_text("image hosts\n")
    return root


def _upper_from(lower: Path, upper: Path) -> Path:
    """A container-like copy: unchanged files are hardlinks of the image's."""
    shutil.copytree(lower, upper, symlinks=True, copy_function=os.link)
    return upper


@pytest.fixture()
def trees(tmp_path: Path):
    lower = _lower(tmp_path / "lower")
    upper = _upper_from(lower, tmp_path / "upper")
    (upper / "etc/change").unlink()
    (upper / "etc/change").write_text("new\n")
    (upper / "etc/gone").unlink()
    for n in ("a", "b"):
        (upper / "empty_me" / n).unlink()
    shutil.rmtree(upper / "was_dir")
    (upper / "was_dir").write_text("now a file\n")
    (upper / "new").mkdir()
    (upper / "new/data").write_bytes(b"\x00" * 5000)
    os.link(upper / "new/data", upper / "new/data2")
    (upper / "new/sym").symlink_to("../etc/keep")
    (upper / "etc/hosts").write_text("the runner's hosts\n")
    return lower, upper


def _names(entries: list[Entry]) -> list[tuple[str, str]]:
    return [(e.name, e.kind) for e in entries]


def test_diff_lists_changes_in_layer_order(trees):
    lower, upper = trees
    entries = diff_tree(upper, lower, Owners(), Owners())
    assert _names(entries) == [
        ("empty_me", "dir"),
        ("empty_me", "opaque"),
        ("etc", "dir"),
        ("etc/gone", "whiteout"),
        ("etc/change", "file"),
        ("new", "dir"),
        ("new/data", "file"),
        ("new/data2", "hardlink"),
        ("new/sym", "symlink"),
        ("was_dir", "whiteout"),
        ("was_dir", "file"),
    ]
    assert entries[7].link == "new/data"
    # the real user's files are root's in the guest; etc/hosts (the runner's) is never listed
    assert all((e.uid, e.gid) == (0, 0) for e in entries)


def test_owners_come_from_the_fake_root_not_the_disk(trees):
    lower, upper = trees
    db = FakeDB()
    db.set(upper / "new", uid=1234, gid=4321, mode=stat.S_IFDIR | 0o2750)
    db.set(upper / "new/data", uid=1234, gid=4321)
    (upper / "dev0").write_bytes(b"")
    db.set(upper / "dev0", mode=stat.S_IFCHR | 0o620, rdev=os.makedev(4, 1))
    entries = {e.name: e for e in diff_tree(upper, lower, Owners(db=db), Owners())}
    assert (entries["new"].uid, entries["new"].gid, entries["new"].mode) == (1234, 4321, 0o2750)
    assert (entries["new/data"].uid, entries["new/data2"].kind) == (1234, "hardlink")
    assert (entries["dev0"].kind, entries["dev0"].rdev, entries["dev0"].mode) == ("char", (4, 1), 0o620)
    assert entries["new/sym"].uid == 0


def test_a_chown_alone_is_a_change(trees):
    lower, upper = trees
    db = FakeDB()
    db.set(upper / "etc", uid=7, gid=7)
    entries = diff_tree(upper, lower, Owners(db=db), Owners())
    assert ("etc", "dir") in _names(entries) and entries[2].uid == 7


def test_unchanged_tree_gives_no_entries(tmp_path: Path):
    lower = _lower(tmp_path / "lower")
    upper = tmp_path / "upper"
    shutil.copytree(lower, upper, symlinks=True)  # copies, not links: compared by content
    for p in [upper, *upper.rglob("*")]:
        src = lower / p.relative_to(upper)
        if not p.is_symlink():
            st = os.lstat(src)
            os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert diff_tree(upper, lower, Owners(), Owners()) == []


def _round_trip(tmp_path: Path, lower: Path, blob: LayerBlob, store: BlobStore, base: LayerBlob) -> Path:
    out = tmp_path / "unpacked"
    unpack_layers(store, [LayerSpec(base.digest, base.diff_id), LayerSpec(blob.digest, blob.diff_id)], out)
    return out


def _listing(root: Path) -> dict[str, tuple]:
    out = {}
    for p in sorted(root.rglob("*")):
        st = os.lstat(p)
        data = os.readlink(p) if p.is_symlink() else (p.read_bytes() if p.is_file() else None)
        out[str(p.relative_to(root))] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), data)
    return out


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_layer_applied_on_the_image_gives_the_container(trees, tmp_path: Path, compression: str):
    lower, upper = trees
    store = BlobStore(tmp_path / "store")
    base = write_layer(diff_tree(lower, None, Owners(), exclude=()), store, compression)
    blob = write_layer(diff_tree(upper, lower, Owners(), Owners()), store, compression)
    assert store.has(blob.digest) and blob.size == store.path(blob.digest).stat().st_size
    got = _listing(_round_trip(tmp_path, lower, blob, store, base))
    want = {k: v for k, v in _listing(upper).items() if k != "etc/hosts"}
    want["etc/hosts"] = _listing(lower)["etc/hosts"]
    assert got == want
    assert os.lstat(tmp_path / "unpacked/new/data").st_ino == os.lstat(tmp_path / "unpacked/new/data2").st_ino


def test_gnu_tar_reads_owners_whiteouts_and_clamped_mtimes(trees, tmp_path: Path):
    lower, upper = trees
    db = FakeDB()
    db.set(upper / "new", uid=1234, gid=4321)
    store = BlobStore(tmp_path / "store")
    blob = write_layer(diff_tree(upper, lower, Owners(db=db), Owners()), store, "gzip", epoch=1000)
    listing = subprocess.run(
        ["tar", "-tvzf", str(store.path(blob.digest)), "--numeric-owner", "--full-time"],
        capture_output=True, text=True, check=True, env={**os.environ, "TZ": "UTC"},
    ).stdout
    lines = {line.split()[-1] if "->" not in line else line.split()[-3]: line for line in listing.splitlines()}
    assert " 1234/4321 " in lines["new/"], listing
    assert "etc/.wh.gone" in lines and "empty_me/.wh..wh..opq" in lines
    assert all("1970-01-01 00:16:40" in line for line in listing.splitlines()), listing


def test_same_entries_same_digests(trees, tmp_path: Path):
    lower, upper = trees
    store = BlobStore(tmp_path / "store")
    entries = diff_tree(upper, lower, Owners(), Owners())
    a = write_layer(entries, store, "gzip", epoch=0)
    os.utime(upper / "new/data", (5e8, 5e8))
    b = write_layer(diff_tree(upper, lower, Owners(), Owners()), store, "gzip", epoch=0)
    assert (a.digest, a.diff_id) == (b.digest, b.diff_id)
    c = write_layer(entries, store, "zstd", epoch=0)
    assert c.diff_id == a.diff_id and c.digest != a.digest
    assert c.media_type() == "application/vnd.oci.image.layer.v1.tar+zstd"
    assert a.media_type(docker=True) == "application/vnd.docker.image.rootfs.diff.tar.gzip"
    with pytest.raises(OcirunError):
        c.media_type(docker=True)
    with tarfile.open(store.path(a.digest)) as tf:
        assert {m.uname for m in tf.getmembers()} == {""}


def test_source_date_epoch_parsing():
    assert source_date_epoch({}) is None
    assert source_date_epoch({"SOURCE_DATE_EPOCH": "1700000000"}) == 1700000000
    with pytest.raises(OcirunError, match="not a number"):
        source_date_epoch({"SOURCE_DATE_EPOCH": "yesterday"})
