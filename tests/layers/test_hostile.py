"""Hostile layers: nothing may be written outside the tree; the entry is named in the error."""

from __future__ import annotations

import os
import tarfile

import pytest

from layers.blobs import BlobStore
from layers.treewriter import UnsafeEntryError
from layers.unpack import unpack_layers
from tests.layers.tarbuild import add_layers


def _raw(name: str, kind=tarfile.REGTYPE, linkname: str = "", data: bytes = b"pwned"):
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.linkname = linkname
    ti.mode = 0o644
    if kind == tarfile.REGTYPE:
        ti.size = len(data)
        return ("raw", ti, data)
    return ("raw", ti, None)


def run_hostile(tmp_path, layers):
    outside = tmp_path / "outside"
    outside.mkdir(exist_ok=True)
    (outside / "victim").write_text("original")
    store = BlobStore(tmp_path / "store")
    specs = add_layers(store, [[e(outside) if callable(e) else e for e in layer] for layer in layers])
    dest = tmp_path / "rootfs"
    with pytest.raises(UnsafeEntryError) as info:
        unpack_layers(store, specs, dest)
    assert sorted(os.listdir(outside)) == ["victim"]
    assert (outside / "victim").read_text() == "original"
    return str(info.value)


def test_dotdot_name(tmp_path):
    msg = run_hostile(tmp_path, [[_raw("../outside/pwned")]])
    assert "../outside/pwned" in msg


def test_dotdot_in_the_middle(tmp_path):
    msg = run_hostile(tmp_path, [[("dir", "a"), _raw("a/../../outside/pwned")]])
    assert "a/../../outside/pwned" in msg


def test_absolute_name(tmp_path):
    msg = run_hostile(tmp_path, [[lambda out: _raw(str(out / "pwned"))]])
    assert "absolute" in msg


def test_symlink_parent_absolute_same_layer(tmp_path):
    msg = run_hostile(
        tmp_path, [[lambda out: ("symlink", "evil", str(out)), ("file", "evil/pwned", "x")]]
    )
    assert "evil/pwned" in msg


def test_symlink_parent_planted_in_lower_layer(tmp_path):
    msg = run_hostile(
        tmp_path, [[lambda out: ("symlink", "evil", str(out))], [("file", "evil/victim", "overwritten")]]
    )
    assert "evil/victim" in msg


def test_symlink_parent_relative_escape(tmp_path):
    # rootfs is tmp_path/rootfs, so ../outside from the root is tmp_path/outside
    msg = run_hostile(
        tmp_path, [[("dir", "d"), ("symlink", "d/up", "../../outside"), ("file", "d/up/pwned", "x")]]
    )
    assert "d/up/pwned" in msg


def test_symlink_chain_escape(tmp_path):
    msg = run_hostile(
        tmp_path,
        [[("symlink", "a", "b"), lambda out: ("symlink", "b", str(out))], [("file", "a/pwned", "x")]],
    )
    assert "a/pwned" in msg


def test_symlink_to_root_as_parent(tmp_path):
    msg = run_hostile(tmp_path, [[("symlink", "root", "/")], [lambda out: ("file", f"root{out}/pwned", "x")]])
    assert "pwned" in msg


def test_hardlink_pointing_out(tmp_path):
    msg = run_hostile(tmp_path, [[_raw("link", tarfile.LNKTYPE, "../outside/victim")]])
    assert "link" in msg


def test_hardlink_absolute(tmp_path):
    msg = run_hostile(tmp_path, [[lambda out: _raw("link", tarfile.LNKTYPE, str(out / "victim"))]])
    assert "link" in msg


def test_hardlink_to_symlink_pointing_out(tmp_path):
    """link() of a symlink that points out must not link the outside file into the tree."""
    msg = run_hostile(
        tmp_path,
        [[lambda out: ("symlink", "sym", str(out / "victim")), _raw("hl", tarfile.LNKTYPE, "sym"), ("file", "hl", "overwritten")]],
    )
    assert "hl" in msg


def test_whiteout_dotdot(tmp_path):
    run_hostile(tmp_path, [[_raw("a/.wh...")]])


def test_whiteout_through_symlink(tmp_path):
    msg = run_hostile(tmp_path, [[lambda out: ("symlink", "evil", str(out))], [("file", "evil/.wh.victim", "")]])
    assert "evil/.wh.victim" in msg


def test_file_replacing_symlink_does_not_write_through(tmp_path):
    """An entry named like an existing symlink replaces the link, never the target."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_text("original")
    store = BlobStore(tmp_path / "store")
    specs = add_layers(store, [[("symlink", "link", str(outside / "victim"))], [("file", "link", "new")]])
    dest = tmp_path / "rootfs"
    unpack_layers(store, specs, dest)
    assert (outside / "victim").read_text() == "original"
    assert not os.path.islink(dest / "link") and (dest / "link").read_text() == "new"


def test_hardlink_target_through_symlink_parent(tmp_path):
    msg = run_hostile(
        tmp_path, [[lambda out: ("symlink", "evil", str(out))], [_raw("stolen", tarfile.LNKTYPE, "evil/victim")]]
    )
    assert "stolen" in msg


def test_symlink_loop_as_parent(tmp_path):
    msg = run_hostile(tmp_path, [[("symlink", "a", "b"), ("symlink", "b", "a"), ("file", "a/x", "x")]])
    assert "too many levels of symlinks" in msg


def test_opaque_marker_through_symlink(tmp_path):
    msg = run_hostile(tmp_path, [[lambda out: ("symlink", "evil", str(out))], [("file", "evil/.wh..wh..opq", "")]])
    assert "evil/.wh..wh..opq" in msg
