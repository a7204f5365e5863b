"""Bindings: -b spec parsing, -R/-S sets, longest match both ways, and resolution through them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ocirun.engine.path import (
    R_BINDINGS,
    S_BINDINGS,
    BindingMap,
    GuestPathError,
    PathTranslator,
    parse_bind_spec,
    recommended_bindings,
)
from ocirun.engine.plan import Binding

# ------------------------------------------------------------------ parsing


def test_parse_host_only():
    b = parse_bind_spec("/etc/hosts")
    assert b == Binding(host="/etc/hosts", guest="/etc/hosts", deref_guest=True)


def test_parse_host_guest_and_bang():
    assert parse_bind_spec("/a/b:/c") == Binding("/a/b", "/c")
    assert parse_bind_spec("/a/b/:/c/d/") == Binding("/a/b", "/c/d")
    b = parse_bind_spec("/a:/c/link!")
    assert (b.guest, b.deref_guest) == ("/c/link", False)


def test_parse_relative_and_home(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert parse_bind_spec("~/data:/data").host == str(tmp_path / "data")
    assert parse_bind_spec("~").guest == str(tmp_path)
    assert parse_bind_spec("rel/dir:/x", cwd="/srv").host == "/srv/rel/dir"
    assert parse_bind_spec("../up", cwd="/srv/a") == Binding("/srv/up", "/srv/up")
    monkeypatch.chdir(tmp_path)
    assert parse_bind_spec("x").host == str(tmp_path / "x")


@pytest.mark.parametrize(
    "spec, words",
    [
        ("", "empty"),
        (":/x", "empty host"),
        (":", "empty host"),
        ("/x:", "empty guest"),
        ("/x:!", "empty guest"),
        ("/x:rel", "must be absolute"),
        ("/x:~/y", "must be absolute"),
        ("/x\0y", "NUL"),
    ],
)
def test_parse_errors_are_clear(spec, words):
    with pytest.raises(ValueError, match=words):
        parse_bind_spec(spec)


def test_recommended_sets_follow_the_manual(tmp_path):
    assert "/etc/passwd" in R_BINDINGS and "/etc/passwd" not in S_BINDINGS
    assert "/run/shm" in S_BINDINGS and "/var/run/dbus/system_bus_socket" in R_BINDINGS
    root = tmp_path / "guest"
    root.mkdir()
    for kind, table in (("R", R_BINDINGS), ("S", S_BINDINGS)):
        got = recommended_bindings(str(root), kind)
        expected = [
            p.rstrip("/") if p != "*path*" else str(root)
            for p in table
            if os.path.lexists(str(root) if p == "*path*" else p)
        ]
        assert [b.host for b in got] == expected
        assert all(b.host == b.guest for b in got)
        assert Binding(str(root), str(root)) in got
    with pytest.raises(ValueError):
        recommended_bindings(str(root), "X")


def test_recommended_skips_missing(tmp_path):
    missing = tmp_path / "nope"
    got = recommended_bindings(str(missing), "S")
    assert all(b.host != str(missing) for b in got)


# ------------------------------------------------------------- BindingMap


def test_binding_map_longest_match_both_ways():
    m = BindingMap([("/r", "/"), ("/h/data", "/data"), ("/h/deep", "/data/x/deep"), ("/", "/host")])
    assert m.guest_to_host("/data/x/deep/f") == "/h/deep/f"
    assert m.guest_to_host("/data/x/deeper") == "/h/data/x/deeper"
    assert m.guest_to_host("/datax") == "/r/datax"
    assert m.guest_to_host("/") == "/r"
    assert m.guest_to_host("/host/etc") == "/etc"
    assert m.host_to_guest("/h/deep/f") == "/data/x/deep/f"
    assert m.host_to_guest("/h/data") == "/data"
    assert m.host_to_guest("/r/etc/passwd") == "/etc/passwd"
    assert m.host_to_guest("/etc") == "/host/etc"
    assert m.host_to_guest("/h/datax") == "/host/h/datax"


def test_binding_map_tie_prefers_shortest_guest():
    m = BindingMap([("/r", "/r"), ("/r", "/")])
    assert m.host_to_guest("/r/etc") == "/etc"
    assert BindingMap([("/r", "/r")]).host_to_guest("/x") is None


# -------------------------------------------------- resolution through bindings


def tr_with(rootfs: Path, specs: list[str], cache: bool) -> PathTranslator:
    return PathTranslator(str(rootfs), [parse_bind_spec(s) for s in specs], cache=cache)


def test_bind_directory_and_file(rootfs, hostdir, cache_mode):
    tr = tr_with(rootfs, [f"{hostdir}:/data", f"{hostdir}/hostfile:/etc/passwd"], cache_mode)
    assert tr.to_host("/data") == str(hostdir)
    assert tr.to_host("/data/sub/inner") == f"{hostdir}/sub/inner"
    assert tr.to_host("/etc/passwd") == f"{hostdir}/hostfile"
    assert tr.to_host("/etc/passwd/", follow_last=False) == f"{hostdir}/hostfile/"
    with pytest.raises(GuestPathError) as info:
        tr.to_host("/etc/passwd/x")
    assert info.value.errno == 20  # ENOTDIR
    # '..' out of a binding goes to the GUEST parent
    assert tr.to_host("/data/..") == str(rootfs) + "/."
    assert tr.to_host("/data/../etc/passwd") == f"{hostdir}/hostfile"
    assert tr.canonical("/data/sub/..") == "/data"


def test_symlinks_in_bound_dir_resolve_in_guest(rootfs, hostdir, cache_mode):
    tr = tr_with(rootfs, [f"{hostdir}:/data"], cache_mode)
    # host link -> /etc : the GUEST's /etc, as PRoot does
    assert tr.to_host("/data/abs_link/passwd") == str(rootfs) + "/etc/passwd"
    assert tr.to_host("/data/rel_link/inner") == f"{hostdir}/sub/inner"
    assert tr.to_host("/data/abs_link", follow_last=False) == f"{hostdir}/abs_link"


def test_guest_symlink_to_binding(rootfs, hostdir, cache_mode):
    os.symlink("/data/sub", rootfs / "to_data")
    tr = tr_with(rootfs, [f"{hostdir}:/data"], cache_mode)
    assert tr.to_host("/to_data/inner") == f"{hostdir}/sub/inner"


def test_nested_bindings_longest_match(rootfs, hostdir, tmp_path, cache_mode):
    other = tmp_path / "other"
    other.mkdir()
    (other / "o").write_text("o")
    tr = tr_with(rootfs, [f"{other}:/data/sub", f"{hostdir}:/data"], cache_mode)
    assert tr.to_host("/data/sub/o") == f"{other}/o"
    assert tr.to_host("/data/hostfile") == f"{hostdir}/hostfile"
    assert tr.to_guest(f"{other}/o") == "/data/sub/o"
    assert tr.to_guest(f"{hostdir}/hostfile") == "/data/hostfile"


def test_guest_symlink_is_dereferenced_unless_bang(rootfs, hostdir, cache_mode):
    # rootfs /abs_etc -> /etc: binding onto /abs_etc lands on /etc
    tr = tr_with(rootfs, [f"{hostdir}:/abs_etc"], cache_mode)
    assert tr.to_host("/etc/hostfile") == f"{hostdir}/hostfile"
    assert tr.to_host("/abs_etc/hostfile") == f"{hostdir}/hostfile"
    # with '!' the symlink itself is covered; /etc stays the guest's
    tr = tr_with(rootfs, [f"{hostdir}:/abs_etc!"], cache_mode)
    assert tr.to_host("/abs_etc/hostfile") == f"{hostdir}/hostfile"
    assert tr.to_host("/etc/passwd") == str(rootfs) + "/etc/passwd"
    assert tr.to_host("/abs_etc", follow_last=False) == str(hostdir)


def test_binding_onto_missing_guest_path(rootfs, hostdir, cache_mode):
    tr = tr_with(rootfs, [f"{hostdir}:/opt/a/b", f"{hostdir}/hostfile:/new/file"], cache_mode)
    try:
        assert tr.to_host("/opt/a/b/hostfile") == f"{hostdir}/hostfile"
        assert tr.to_host("/new/file") == f"{hostdir}/hostfile"
        # the parents appear as directories listing the bound entries
        assert os.path.isdir(tr.to_host("/opt"))
        assert os.listdir(tr.to_host("/opt")) == ["a"]
        assert os.listdir(tr.to_host("/opt/a/")) == ["b"]
        assert os.listdir(tr.to_host("/new")) == ["file"]
        assert tr.canonical("/opt/a/..") == "/opt"
        assert tr.to_guest(tr.to_host("/opt/a")) == "/opt/a"
        # nothing else lives there
        with pytest.raises(GuestPathError):
            tr.to_host("/opt/zzz/x")
        # the rootfs was not touched
        assert not (rootfs / "opt").exists()
    finally:
        tr.close()
    assert not os.path.exists(tr.glue_root)


def test_glue_made_during_setup_lists_later_bindings(rootfs, hostdir, cache_mode):
    # canonicalising the deeper binding walks through /x (glue) before /x/b is known
    tr = tr_with(rootfs, [f"{hostdir}:/x/a", f"{hostdir}/sub:/x/c/d", f"{hostdir}:/x/e/f/g"], cache_mode)
    try:
        assert sorted(os.listdir(tr.to_host("/x"))) == ["a", "c", "e"]
        assert tr.to_host("/x/c/d/inner") == f"{hostdir}/sub/inner"
        assert tr.to_host("/x/e/f/g/hostfile") == f"{hostdir}/hostfile"
    finally:
        tr.close()


def test_binding_onto_missing_leaf_in_existing_dir(rootfs, hostdir, cache_mode):
    tr = tr_with(rootfs, [f"{hostdir}:/usr/newdir", f"{hostdir}:/top", f"{hostdir}:/opt/x"], cache_mode)
    # readdir of the real /usr does not show it: the engine can add these names
    assert "newdir" not in os.listdir(tr.to_host("/usr"))
    assert tr.bound_children("/usr") == ["newdir"]
    assert tr.bound_children("/") == ["opt", "top", "usr"]
    assert tr.bound_children("/opt") == ["x"]
    assert tr.bound_children("/etc") == []
    assert tr.to_host("/usr/newdir/hostfile") == f"{hostdir}/hostfile"
    assert tr.to_host("/usr/bin/sh") == str(rootfs) + "/usr/bin/sh"


def test_bind_host_root(rootfs, cache_mode):
    tr = tr_with(rootfs, ["/:/host-rootfs"], cache_mode)
    assert tr.to_host("/host-rootfs") == "/"
    assert tr.to_host("/host-rootfs/etc/hostname") == "/etc/hostname"
    assert tr.to_host("/host-rootfs/..") == str(rootfs) + "/."
    assert tr.to_guest("/etc/hostname") == "/host-rootfs/etc/hostname"
    assert tr.to_guest(str(rootfs) + "/etc") == "/etc"


def test_bind_onto_guest_root_replaces_rootfs(rootfs, hostdir, cache_mode):
    tr = PathTranslator(str(rootfs), [Binding(str(hostdir), "/")], cache=cache_mode)
    assert tr.to_host("/hostfile") == f"{hostdir}/hostfile"


def test_missing_host_is_skipped(rootfs, tmp_path, cache_mode):
    b = parse_bind_spec(f"{tmp_path}/nothing:/x")
    tr = PathTranslator(str(rootfs), [b], cache=cache_mode)
    assert tr.skipped == [b]
    assert tr.to_host("/x") == str(rootfs) + "/x"


def test_host_path_is_realpathed(rootfs, hostdir, tmp_path, cache_mode):
    os.symlink(hostdir, tmp_path / "hostalias")
    tr = tr_with(rootfs, [f"{tmp_path}/hostalias:/data"], cache_mode)
    assert tr.to_host("/data/hostfile") == f"{hostdir}/hostfile"


def test_recommended_R_rootfs_self_binding(rootfs, cache_mode):
    tr = PathTranslator(str(rootfs), recommended_bindings(str(rootfs), "R"), cache=cache_mode)
    assert tr.to_host("/etc/passwd") == "/etc/passwd"  # host's, bound by -R
    assert tr.to_host(str(rootfs) + "/usr/bin/sh") == str(rootfs) + "/usr/bin/sh"
    assert tr.to_guest(str(rootfs) + "/usr/bin/sh") == "/usr/bin/sh"
    assert tr.to_host("/proc/self", pid=4242) == "/proc/4242"
    assert tr.to_host("/proc/self", follow_last=False, pid=4242) == "/proc/self"


def test_proc_self_is_the_tracee(rootfs, cache_mode, monkeypatch):
    """Through a bound /proc: self is the tracee, magic links map back into the guest."""
    me = os.getpid()
    tr = PathTranslator(str(rootfs), [parse_bind_spec("/proc")], cache=cache_mode)
    assert tr.to_host("/proc/self/status", pid=1) == "/proc/1/status"
    assert tr.to_host("/proc/thread-self/comm", pid=1, tid=1) == "/proc/1/task/1/comm"
    assert tr.to_host("/proc/self/status", pid=me) == f"/proc/{me}/status"  # never cached per pid
    # /proc/PID/root is the guest root, not the host's
    assert tr.to_host("/proc/self/root/etc/passwd", pid=me) == str(rootfs) + "/etc/passwd"
    # /proc/PID/cwd holds a host path: mapped back into the guest
    monkeypatch.chdir(rootfs / "usr/bin")
    assert tr.to_host("/proc/self/cwd/sh", pid=me) == str(rootfs) + "/usr/bin/sh"
    assert tr.canonical("/proc/self/cwd", pid=me) == "/usr/bin"
    assert tr.canonical("/proc/self/cwd/..", pid=me) == "/usr"
    # as the last component the kernel follows it (in the tracee): the very object
    assert tr.to_host("/proc/self/cwd", pid=me) == f"/proc/{me}/cwd"
    assert tr.to_host("/proc/self/root", pid=me) == str(rootfs)
    assert tr.canonical("/proc/self/root/..", pid=me) == "/"
    assert tr.readlink_guest(f"/proc/{me}/cwd") == "/usr/bin"
    # a pipe: the kernel follows the magic link itself
    r, w = os.pipe()
    try:
        assert tr.to_host(f"/proc/self/fd/{r}", pid=me) == f"/proc/{me}/fd/{r}"
        assert tr.readlink_guest(f"/proc/{me}/fd/{r}").startswith("pipe:[")
    finally:
        os.close(r)
        os.close(w)
    # a deleted file keeps its suffix
    victim = rootfs / "tmp/victim"
    victim.write_text("x")
    fd = os.open(victim, os.O_RDONLY)
    try:
        os.unlink(victim)
        assert tr.readlink_guest(f"/proc/{me}/fd/{fd}") == "/tmp/victim (deleted)"
        assert tr.to_host(f"/proc/self/fd/{fd}", pid=me) == f"/proc/{me}/fd/{fd}"
    finally:
        os.close(fd)


def test_readlink_guest_keeps_guest_links_byte_for_byte(rootfs, cache_mode):
    tr = PathTranslator(str(rootfs), [], cache=cache_mode)
    assert tr.readlink_guest(tr.to_host("/bin", follow_last=False)) == "/usr/bin"
    assert tr.readlink_guest(tr.to_host("/escape", follow_last=False)) == "../../../.."


def test_binding_for_readonly(rootfs, hostdir, cache_mode):
    tr = PathTranslator(
        str(rootfs), [parse_bind_spec(f"{hostdir}:/data", readonly=True)], cache=cache_mode
    )
    assert tr.binding_for("/data/sub").readonly
    assert tr.binding_for("/etc") is None


def test_chrooted_translator(rootfs, hostdir, cache_mode):
    os.symlink("/sub", rootfs / "dir/abs_sub")
    tr = tr_with(rootfs, [f"{hostdir}:/dir/data", f"{hostdir}:/elsewhere"], cache_mode)
    inner = tr.chrooted("/dir/up/dir")  # symlinks resolved first: /dir
    assert inner.rootfs == str(rootfs / "dir")
    assert inner.to_host("/sub/deep") == str(rootfs / "dir/sub/deep")
    assert inner.to_host("/../../sub") == str(rootfs / "dir/sub")
    assert inner.to_host("/abs_sub/deep") == str(rootfs / "dir/sub/deep")  # '/' is the new root
    assert inner.to_host("/data/hostfile") == f"{hostdir}/hostfile"  # binding below: kept
    assert inner.to_host("/elsewhere") == str(rootfs / "dir/elsewhere")  # binding outside: gone
    assert inner.to_guest(str(rootfs / "dir/sub")) == "/sub"
    with pytest.raises(GuestPathError) as info:
        tr.chrooted("/file")
    assert info.value.errno == 20  # ENOTDIR
    with pytest.raises(GuestPathError) as info:
        tr.chrooted("/missing")
    assert info.value.errno == 2  # ENOENT
    assert tr.chrooted("/").to_host("/etc/passwd") == str(rootfs) + "/etc/passwd"
