"""Containers through the CLI against the real store and registry (no engine needed here)."""

from __future__ import annotations

import json
import os
import time

from tests.helpers import assert_one_line_error


def test_create_is_cheap_and_shares_the_image(oc) -> None:
    t0 = time.perf_counter()
    cp = oc("create", "--name", "cheap", oc.images.debian, "true")
    wall = time.perf_counter() - t0
    assert cp.returncode == 0, cp.stderr
    cid = cp.stdout.strip()
    assert len(cid) == 64
    try:
        info = json.loads(oc("container", "inspect", "cheap").stdout)[0]
        assert info["Id"] == cid and info["ImageID"].startswith("sha256:")
        cdir = oc.root / "containers" / cid
        assert (cdir / "config.json").is_file()
        image_root = info["ImageRoot"]
        # the image is not copied: a top-level file is a hardlink to the image's
        etc_passwd = os.stat(cdir / "rootfs" / "etc" / "passwd")
        assert etc_passwd.st_ino == os.stat(os.path.join(image_root, "etc", "passwd")).st_ino
        assert os.listdir(cdir / "rootfs" / "usr") == []  # lazy until the engine looks
        assert wall < 5  # the whole CLI process; the create itself is timed below
    finally:
        oc("rm", "cheap")


def test_create_time_under_200ms(oc) -> None:
    """The container creation itself (store open + lazy tree) for the Debian image."""
    from ocirun.run.containers import ContainerStore, open_stores
    from ocirun.run.options import RawRunArgs, build_options
    from ocirun.run.runner import create_container

    store, cstore = open_stores(str(oc.root))
    opts = build_options(RawRunArgs(image=oc.images.debian, command=("true",), pull="never"), host_env={})
    create_container(store, cstore, opts)  # warm-up (imports)
    times = []
    for _ in range(3):
        opts = build_options(RawRunArgs(image=oc.images.debian, command=("true",), pull="never"), host_env={})
        t0 = time.perf_counter()
        c = create_container(store, cstore, opts)
        times.append(time.perf_counter() - t0)
    for c in ContainerStore(oc.root).list():
        cstore.remove(c, force=True)
    assert min(times) < 0.2, times


def test_ps_rm_prune_and_names(oc) -> None:
    a = oc("create", "--name", "ps-a", oc.images.busybox, "true")
    assert a.returncode == 0, a.stderr
    dup = oc("create", "--name", "ps-a", oc.images.busybox, "true")
    assert dup.returncode == 125 and "already in use" in dup.stderr
    b = oc("create", oc.images.busybox, "sh", "-c", "echo a long command line here")
    bid = b.stdout.strip()
    ps = oc("ps", "-a")
    header = ps.stdout.splitlines()[0].split()
    assert header[:2] == ["CONTAINER", "ID"] and "NAMES" in header and "STATUS" in header
    assert "ps-a" in ps.stdout and bid[:12] in ps.stdout and "Created" in ps.stdout
    assert "ps-a" not in oc("ps").stdout  # only running ones
    assert bid in oc("ps", "-a", "-q", "--no-trunc").stdout.split()
    assert oc("rm", bid[:8]).stdout.strip() == bid[:8]
    missing = oc("rm", "no-such-container")
    assert_one_line_error(missing, 1)
    pr = oc("container", "prune", "-f")
    assert pr.returncode == 0 and "Total reclaimed space" in pr.stdout
    assert "ps-a" not in oc("ps", "-a").stdout


def test_bad_options_are_125_one_line(oc) -> None:
    for args in (
        ["run", "-p", "x:80", oc.images.busybox, "true"],
        ["run", "--platform", "m68k", oc.images.busybox, "true"],
        ["run", "--pull", "sometimes", oc.images.busybox, "true"],
        ["run", "-v", "relative:/x", oc.images.busybox, "true"],
        ["run", "--no-such-flag", oc.images.busybox, "true"],
        ["run", "--pull", "never", "127.0.0.1:1/none/such:tag", "true"],
        ["run", "-u", "nosuchuser", oc.images.busybox, "true"],
    ):
        assert_one_line_error(oc(*args), 125)
    # docker also says "Unable to find image ... locally" before pulling
    cp = oc("run", oc.images.host + "/test/does-not-exist:1", "true")
    assert cp.returncode == 125 and "Traceback" not in cp.stderr
    assert cp.stderr.splitlines()[-1].startswith("ocirun: ")


def test_ignored_flags_warn_once(oc) -> None:
    cp = oc("create", "--memory", "1g", "-m", "2g", "--cpus", "2", "--privileged", "--network", "none",
            "--cap-add", "SYS_ADMIN", "--security-opt", "x", "--ulimit", "nofile=1", "--pids-limit", "5",
            "--device", "/dev/null", "--net", "host", oc.images.busybox, "true")
    assert cp.returncode == 0, cp.stderr
    warnings = [line for line in cp.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 9, cp.stderr  # -m is --memory: once
    assert "Traceback" not in cp.stderr
    oc("rm", cp.stdout.strip())


def test_export_is_the_merged_tree(oc, tmp_path) -> None:
    import tarfile

    cid = oc("create", oc.images.busybox, "true").stdout.strip()
    out = tmp_path / "c.tar"
    cp = oc("export", "-o", out, cid)
    assert cp.returncode == 0, cp.stderr
    with tarfile.open(out) as tar:
        names = set(tar.getnames())
    assert "bin/busybox" in names and "etc/hosts" in names and "etc/hostname" in names
    oc("rm", cid)
