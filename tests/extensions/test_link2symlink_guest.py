"""-l: hard links emulated with symlinks, forced on by the flag or the environment."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from ocirun.engine.extensions import build
from ocirun.engine.extensions.link2symlink import Link2Symlink
from ocirun.engine.extensions.shared.linkprobe import link2symlink_needed
from tests.extensions.guest import BINDS, GUEST_ENV, LAUNCHER, sh
from tests.extensions.test_fake_id0_guest import build_demo_deb
from tests.helpers import ocirun_env
from tests.helpers.deny import deny_argv

SCRIPT = """
set -e
cd /tmp; echo data > a; ln a b; ln b c
stat -c '%h %F %n' a b c
readlink b || echo not-a-symlink
[ /tmp/a -ef /tmp/c ] && echo same-file
rm a; stat -c '%h %n' b c; cat c
mv c d; echo more >> d; cat b; stat -c '%h %n' b d
rm b; stat -c '%h %n' d; rm d
ls -A /.ocirun-l2s | wc -l
"""
EXPECTED = ["3 regular file a", "3 regular file b", "3 regular file c", "not-a-symlink",
            "same-file", "2 b", "2 c", "data", "data", "more", "2 b", "2 d", "1 d", "0"]


@pytest.mark.parametrize("how", ["flag", "env"])
def test_ln_stat_rm_mv(debian_rootfs_copy, how):
    opts, env = (("-l",), None) if how == "flag" else ((), {"OCIRUN_LINK2SYMLINK": "1"})
    out = sh(debian_rootfs_copy, SCRIPT, *opts, env=env).stdout.splitlines()
    assert out == EXPECTED
    # on the host no real hard link was made: the store file has one link
    store = debian_rootfs_copy / ".ocirun-l2s"
    assert not store.exists() or os.listdir(store) == []


def test_links_survive_the_run(debian_rootfs_copy):
    sh(debian_rootfs_copy, "echo x > /tmp/a; ln /tmp/a /tmp/b", "-l")
    assert os.path.islink(debian_rootfs_copy / "tmp/a")
    store = debian_rootfs_copy / ".ocirun-l2s"
    (data,) = [n for n in os.listdir(store) if not n.endswith(".nlink")]
    assert os.lstat(store / data).st_nlink == 1
    assert os.readlink(debian_rootfs_copy / "tmp/b").startswith("/.ocirun-l2s/")
    out = sh(debian_rootfs_copy, "stat -c %h /tmp/a; rm /tmp/a; stat -c %h /tmp/b; cat /tmp/b",
             "-l").stdout.split()
    assert out == ["2", "1", "x"]


def test_dpkg_i_with_link2symlink_and_fake_root(debian_rootfs_copy):
    build_demo_deb(debian_rootfs_copy, "1.0", "-l")
    build_demo_deb(debian_rootfs_copy, "2.0", "-l")
    out = sh(debian_rootfs_copy, """
        set -e
        dpkg -i /tmp/demo_1.0.deb >/dev/null; demo
        stat -c '%h %U' /usr/share/demo/a /usr/share/demo/b
        dpkg -i /tmp/demo_2.0.deb >/dev/null; demo   # upgrade: dpkg's backup links
        dpkg -i /tmp/demo_2.0.deb >/dev/null; demo   # reinstall over itself
        stat -c '%h' /usr/share/demo/a; cat /usr/share/demo/b
        dpkg -r demo >/dev/null; ls /usr/share/demo 2>&1 | wc -l
    """, "-0", "-l").stdout.splitlines()
    assert out == ["demo 1.0", "2 daemon", "2 daemon", "demo 2.0", "demo 2.0", "2", "data", "1"]


def test_automatic_probe(tmp_path, monkeypatch):
    # link() works on this host's filesystems: the probe says no and leaves nothing behind
    assert link2symlink_needed(str(tmp_path)) is False
    assert os.listdir(tmp_path) == []
    monkeypatch.delenv("OCIRUN_LINK2SYMLINK", raising=False)
    assert not any(isinstance(e, Link2Symlink) for e in build(rootfs=str(tmp_path)))
    monkeypatch.setenv("OCIRUN_LINK2SYMLINK", "1")
    assert isinstance(build(rootfs=str(tmp_path))[0], Link2Symlink)
    monkeypatch.setenv("OCIRUN_LINK2SYMLINK", "0")
    assert build(rootfs=str(tmp_path), link2symlink=None) == []


@pytest.mark.parametrize("l2s", ["auto", "off"])
def test_automatic_where_link_is_refused(debian_rootfs_copy, l2s):
    """Android refuses link() with EACCES: imposed here by a seccomp filter on ocirun and
    its guests (tests/helpers/deny.py). Without -l the probe turns link2symlink on and
    the guest's hard links work; with it forced off, `ln` fails as the kernel says.
    Ptrace-only mode: the filter's ERRNO would outrank the engine's own seccomp trap."""
    argv = deny_argv({"link": "EACCES", "linkat": "EACCES"},
                     [*LAUNCHER, "-r", str(debian_rootfs_copy), *BINDS, "/bin/sh", "-c", SCRIPT])
    env = {**GUEST_ENV, "OCIRUN_NO_SECCOMP": "1"}
    if l2s == "off":
        env["OCIRUN_LINK2SYMLINK"] = "0"
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=ocirun_env(env),
                          stdin=subprocess.DEVNULL)
    if l2s == "off":
        assert proc.returncode != 0 and "Permission denied" in proc.stderr, proc.stderr
        return
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == EXPECTED


def _native(script: str, cwd) -> list[str]:
    return subprocess.run(["sh", "-c", script], cwd=cwd, capture_output=True, text=True, check=True).stdout.splitlines()


def test_host_root_keeps_no_store_and_links_stay_beside_their_files(tmp_path):
    """With -r / (PRoot's usual way to add -l to the host) nothing goes into the host's
    root: the file moves beside itself (`.ocirun-l2s.*`, as PRoot's `.l2s.*`), and the
    guest sees what real hard links show natively; later runs still know the names."""
    script = SCRIPT.replace("/tmp/", f"{tmp_path}/w/").replace("cd /tmp", f"cd {tmp_path}/w")
    script = script.replace("ls -A /.ocirun-l2s | wc -l", "ls -A | wc -l")
    (tmp_path / "w").mkdir()
    native = _native(script, tmp_path)
    assert native == EXPECTED
    out = sh("/", script, "-l", binds=()).stdout.splitlines()
    assert out == native and not os.path.lexists("/.ocirun-l2s")
    sh("/", f"cd {tmp_path}/w; echo x > a; ln a b", "-l", binds=())
    names = sorted(os.listdir(tmp_path / "w"))
    assert names[2:] == ["a", "b"] and all(n.startswith(".ocirun-l2s.") for n in names[:2]), names
    assert os.path.islink(tmp_path / "w/a") and os.path.islink(tmp_path / "w/b")  # no real hard link
    out = sh("/", f"cd {tmp_path}/w; stat -c %h a; rm a; stat -c %h b; cat b; rm b; ls -A | wc -l",
             "-l", binds=()).stdout.split()
    assert out == ["2", "1", "x", "0"]


def test_links_in_a_binding_on_another_filesystem(debian_rootfs_copy, tmp_path):
    """The root store is on another filesystem than a binding (a rename across them
    fails with EXDEV): the file moves beside itself, and a later run, told by a marker
    in the root store, still counts and removes its names."""
    import tempfile

    shm = Path(tempfile.mkdtemp(dir="/dev/shm"))
    try:
        assert os.stat(shm).st_dev != os.stat(debian_rootfs_copy).st_dev
        binds = (*BINDS, "-b", f"{shm}:/shm")
        sh(debian_rootfs_copy, "cd /shm; echo x > a; ln a b; ln b c; stat -c %h c", "-l", binds=binds)
        assert os.readlink(shm / "b").startswith("/shm/.ocirun-l2s.")
        out = sh(debian_rootfs_copy, "cd /shm; stat -c %h a; rm a; stat -c %h b; mv c d; cat d; "
                 "stat -c %h b; rm b d; ls -A | wc -l", "-l", binds=binds).stdout.split()
        assert out == ["3", "2", "x", "2", "0"]
    finally:
        shutil.rmtree(shm, ignore_errors=True)
