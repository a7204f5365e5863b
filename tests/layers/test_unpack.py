"""Unpacking crafted layers: every layer feature, real tars and real compression."""

from __future__ import annotations

import os
import stat
import tarfile

import pytest

from layers.blobs import BlobError, BlobStore
from layers.treewriter import UnsafeEntryError, clean_name
from layers.unpack import LayerSpec, unpack_layers
from registry.compression import LayerFormatError, detect
from tests.layers.tarbuild import MTIME, add_layers, compress, make_tar, sha256


def unpack(tmp_path, layers, how="gzip", **kw):
    store = BlobStore(tmp_path / "store")
    specs = add_layers(store, layers, how)
    dest = tmp_path / "rootfs"
    stats = unpack_layers(store, specs, dest, ownership_file=tmp_path / "ownership", **kw)
    return dest, stats


@pytest.mark.parametrize("how", ["gzip", "zstd", "tar"])
def test_compressions(tmp_path, how):
    dest, stats = unpack(tmp_path, [[("dir", "etc"), ("file", "etc/hello", "hi\n")]], how)
    assert (dest / "etc/hello").read_text() == "hi\n"
    assert stats.files == 1


def test_detect_by_magic_not_media_type(tmp_path):
    raw = make_tar([("file", "a", "x")])
    assert detect(compress(raw, "gzip")) == "gzip"
    assert detect(compress(raw, "zstd")) == "zstd"
    assert detect(raw) == "tar"
    store = BlobStore(tmp_path / "s")
    blob = compress(raw, "zstd")
    store.ingest_bytes(sha256(blob), blob)
    # mediaType lies (says gzip): the magic bytes decide.
    spec = LayerSpec(sha256(blob), sha256(raw), "application/vnd.oci.image.layer.v1.tar+gzip")
    unpack_layers(store, [spec], tmp_path / "r")
    assert (tmp_path / "r/a").read_text() == "x"


def test_modes_setuid_sticky_and_mtimes(tmp_path):
    dest, _ = unpack(
        tmp_path,
        [[
            ("dir", "bin", 0o755),
            ("file", "bin/su", "su", 0o4755),
            ("file", "bin/wall", "w", 0o2755),
            ("dir", "tmp", 0o1777),
            ("file", "ro", "r", 0o444),
            ("dir", "rodir", 0o555),
            ("file", "rodir/inside", "i", 0o644),
        ]],
    )
    assert stat.S_IMODE(os.lstat(dest / "bin/su").st_mode) == 0o4755
    assert stat.S_IMODE(os.lstat(dest / "bin/wall").st_mode) == 0o2755
    assert stat.S_IMODE(os.lstat(dest / "tmp").st_mode) == 0o1777
    assert stat.S_IMODE(os.lstat(dest / "ro").st_mode) == 0o444
    assert stat.S_IMODE(os.lstat(dest / "rodir").st_mode) == 0o555
    assert (dest / "rodir/inside").read_text() == "i"
    assert os.lstat(dest / "bin/su").st_mtime == MTIME
    assert os.lstat(dest / "rodir").st_mtime == MTIME


def test_readonly_dirs_and_files_changed_by_later_layers(tmp_path):
    dest, _ = unpack(
        tmp_path,
        [
            [("dir", "ro", 0o555), ("file", "ro/f", "old", 0o444), ("dir", "ro/sub", 0o555), ("file", "ro/sub/g", "g", 0o444)],
            [("file", "ro/f", "new", 0o444), ("file", "ro/added", "a", 0o444), ("file", "ro/sub/.wh.g", "")],
            [("dir", "ro", 0o500)],
        ],
    )
    os.chmod(dest / "ro", 0o755)  # so the test can look (as an unprivileged user too)
    assert (dest / "ro/f").read_text() == "new"
    assert (dest / "ro/added").read_text() == "a"
    assert not (dest / "ro/sub/g").exists()
    assert stat.S_IMODE(os.lstat(dest / "ro/sub").st_mode) == 0o555
    assert stat.S_IMODE(os.lstat(dest / "ro/f").st_mode) == 0o444


def test_symlinks_kept_byte_for_byte(tmp_path):
    dest, _ = unpack(
        tmp_path,
        [[
            ("dir", "usr/bin"),
            ("symlink", "bin", "usr/bin"),
            ("symlink", "abs", "/etc/os-release"),
            ("symlink", "dangling", "../../nowhere/x"),
            ("symlink", "weird", "a//b/./c/"),
        ]],
    )
    assert os.readlink(dest / "bin") == "usr/bin"
    assert os.readlink(dest / "abs") == "/etc/os-release"
    assert os.readlink(dest / "dangling") == "../../nowhere/x"
    assert os.readlink(dest / "weird") == "a//b/./c/"


def test_hardlinks(tmp_path):
    dest, stats = unpack(
        tmp_path,
        [
            [("dir", "a"), ("file", "a/orig", "data", 0o755)],
            [("hardlink", "a/link", "a/orig"), ("hardlink", "top", "./a/orig")],
        ],
    )
    st1, st2, st3 = (os.lstat(dest / p) for p in ("a/orig", "a/link", "top"))
    assert st1.st_ino == st2.st_ino == st3.st_ino and st1.st_nlink == 3
    assert stats.hardlinks == 2


def test_whiteouts_act_on_lower_layers_only(tmp_path):
    dest, _ = unpack(
        tmp_path,
        [
            [("dir", "d"), ("file", "d/gone", "x"), ("file", "d/kept", "k"), ("dir", "d/sub"), ("file", "d/sub/f", "f")],
            [
                ("file", "d/new", "n"),
                ("file", "d/.wh.gone", ""),
                ("file", "d/.wh.sub", ""),
                ("file", "d/.wh.new", ""),  # same layer: must not remove d/new
                ("file", "d/.wh.missing", ""),
            ],
        ],
    )
    assert sorted(os.listdir(dest / "d")) == ["kept", "new"]
    assert not any(n.startswith(".wh.") for n in os.listdir(dest / "d"))


def test_opaque_directory(tmp_path):
    dest, _ = unpack(
        tmp_path,
        [
            [("dir", "o"), ("file", "o/lower1", "1"), ("dir", "o/ld"), ("file", "o/ld/x", "x"), ("file", "keep", "k")],
            [
                ("dir", "o"),
                ("file", "o/before", "b"),  # written before the marker, same layer: kept
                ("file", "o/.wh..wh..opq", ""),
                ("dir", "o/ld"),
                ("file", "o/ld/y", "y"),
            ],
        ],
    )
    assert sorted(os.listdir(dest / "o")) == ["before", "ld"]
    assert os.listdir(dest / "o/ld") == ["y"]
    assert (dest / "keep").exists()


def test_file_to_dir_and_dir_to_file(tmp_path):
    dest, _ = unpack(
        tmp_path,
        [
            [("file", "x", "file"), ("dir", "y"), ("file", "y/inner", "i"), ("symlink", "z", "y")],
            [("dir", "x"), ("file", "x/in", "now a dir"), ("file", "y", "now a file"), ("dir", "z")],
        ],
    )
    assert (dest / "x/in").read_text() == "now a dir"
    assert (dest / "y").read_text() == "now a file"
    assert (dest / "z").is_dir() and not (dest / "z").is_symlink()


def test_long_and_utf8_names_pax_and_gnu(tmp_path):
    long = "d/" + "/".join(["segment-" + "x" * 40] * 4) + "/file-" + "y" * 120
    utf = "données/日本語/ファイル.txt"
    for fmt in (tarfile.PAX_FORMAT, tarfile.GNU_FORMAT):
        store = BlobStore(tmp_path / f"s{fmt}")
        raw = make_tar([("file", long, "long"), ("file", utf, "utf"), ("symlink", "l" * 150, "t" * 200)], fmt=fmt)
        d = sha256(raw)
        store.ingest_bytes(d, raw)
        dest = tmp_path / f"r{fmt}"
        unpack_layers(store, [LayerSpec(d, d)], dest)
        assert (dest / long).read_text() == "long"
        assert (dest / utf).read_text() == "utf"
        assert os.readlink(dest / ("l" * 150)) == "t" * 200


def test_devices_and_fifos_skipped_with_one_notice(tmp_path):
    notices = []
    dest, stats = unpack(
        tmp_path,
        [[("dir", "dev"), ("chr", "dev/null"), ("blk", "dev/sda"), ("fifo", "dev/fifo"), ("file", "ok", "ok")]],
        notice=notices.append,
    )
    assert stats.skipped_special == 3
    assert len(notices) == 1 and "3 device" in notices[0]
    assert os.listdir(dest / "dev") == []
    import json

    doc = json.loads((tmp_path / "ownership").read_text())
    assert doc["entries"]["dev/null"]["type"] == "c"
    assert doc["entries"]["dev/fifo"]["type"] == "p"


def test_ownership_recorded_when_not_applied(tmp_path):
    import json

    dest, _ = unpack(
        tmp_path,
        [[
            ("file", "owned", "o", {"uid": 1000, "gid": 50}),
            ("file", "rootfile", "r"),
            ("dir", "home", 0o755),
            ("dir", "home/app", 0o2750, {"uid": 1000, "gid": 1000}),
            ("symlink", "home/app/link", "x", {"uid": 1000, "gid": 1000}),
            ("file", "suid", "s", 0o4755, {"uid": 1000, "gid": 50}),
        ]],
    )
    doc = json.loads((tmp_path / "ownership").read_text())
    if os.geteuid() == 0:
        assert os.lstat(dest / "owned").st_uid == 1000
        assert os.lstat(dest / "home/app").st_uid == 1000
        assert os.lstat(dest / "home/app/link").st_gid == 1000
        st = os.lstat(dest / "suid")
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (1000, 0o4755)  # chown before chmod
        assert stat.S_IMODE(os.lstat(dest / "home/app").st_mode) == 0o2750
        assert doc["entries"] == {}
    else:
        assert doc["entries"]["owned"] == {"uid": 1000, "gid": 50, "mode": 0o644}
        assert doc["entries"]["home/app"] == {"uid": 1000, "gid": 1000, "mode": 0o2750}
        assert doc["entries"]["home/app/link"]["uid"] == 1000
        assert stat.S_IMODE(os.lstat(dest / "suid").st_mode) == 0o4755
    assert "rootfile" not in doc["entries"]


def test_diff_id_mismatch_rejected(tmp_path):
    store = BlobStore(tmp_path / "s")
    raw = make_tar([("file", "a", "a")])
    blob = compress(raw, "gzip")
    store.ingest_bytes(sha256(blob), blob)
    with pytest.raises(LayerFormatError, match="image config says"):
        unpack_layers(store, [LayerSpec(sha256(blob), sha256(b"other"))], tmp_path / "r")


def test_corrupt_blob_rejected_before_unpacking(tmp_path):
    store = BlobStore(tmp_path / "s")
    raw = make_tar([("file", "a", "a")])
    d = sha256(raw)
    p = store.ingest_bytes(d, raw)
    p.chmod(0o644)
    p.write_bytes(raw[:-512])  # truncated on disk after the fact
    with pytest.raises(BlobError, match="does not match"):
        unpack_layers(store, [LayerSpec(d, d)], tmp_path / "r")
    assert not (tmp_path / "r/a").exists()


def test_root_entry_and_dot_slash_names(tmp_path):
    dest, _ = unpack(tmp_path, [[("dir", "./", 0o755), ("dir", "./etc"), ("file", "./etc/x", "x")]])
    assert (dest / "etc/x").read_text() == "x"


def test_in_tree_relative_symlink_parent_followed(tmp_path):
    """usrmerge: bin -> usr/bin in one layer, bin/tool in a later one lands in usr/bin."""
    dest, _ = unpack(tmp_path, [[("dir", "usr/bin"), ("symlink", "bin", "usr/bin")], [("file", "bin/tool", "t")]])
    assert (dest / "usr/bin/tool").read_text() == "t"
    assert os.path.islink(dest / "bin")


@pytest.mark.parametrize(
    "name", ["a/b", "./a", "a/./b/", "x//y"]
)
def test_clean_name_accepts(name):
    assert ".." not in clean_name(name)


@pytest.mark.parametrize("name", ["/etc/passwd", "../x", "a/../../x", "a/.."])
def test_clean_name_refuses(name):
    with pytest.raises(UnsafeEntryError):
        clean_name(name)
