"""The kernel is the oracle: with rootfs='/', to_host must do what the host's own lookup does."""

from __future__ import annotations

import errno
import json
import os
import random
import subprocess
import sys

import pytest

from ocirun.engine.path import GuestPathError, PathTranslator
from tests.path import randtree


def kernel(path: str, follow: bool) -> tuple[int | None, tuple[int, int] | None]:
    try:
        st = os.stat(path) if follow else os.lstat(path)
    except OSError as exc:
        return exc.errno, None
    return None, (st.st_dev, st.st_ino)


def check_against_kernel(tr: PathTranslator, path: str, follow: bool) -> None:
    kerr, kid = kernel(path, follow)
    try:
        res = tr.resolve(path, follow_last=follow)
    except GuestPathError as exc:
        assert kerr is not None, f"{path!r} follow={follow}: kernel ok, resolver {exc}"
        assert exc.errno == kerr, f"{path!r} follow={follow}: kernel {errno.errorcode[kerr]}, resolver {exc}"
        return
    # the host path must make the kernel do exactly the same thing
    herr, hid = kernel(res.host, follow)
    assert (herr, hid) == (kerr, kid), f"{path!r} follow={follow} -> {res.host!r}"
    if kerr is None and follow:
        assert res.guest == os.path.realpath(path), path
        # no symlink left in the answer: the lookup is done
        assert os.path.realpath(res.guest) == res.guest


@pytest.mark.parametrize("seed", range(12))
def test_random_tree_agrees_with_kernel(tmp_path, seed, cache_mode):
    rng = random.Random(seed)
    base = os.path.realpath(tmp_path / "tree")
    os.mkdir(base)
    entries = randtree.build(base, rng)
    tr = PathTranslator("/", [], cache=cache_mode)
    for _ in range(300):
        path = randtree.random_path(base, entries, rng)
        follow = rng.random() < 0.6
        check_against_kernel(tr, path, follow)
        check_against_kernel(tr, path, follow)  # second time: from the cache when on


def test_relative_paths_against_kernel(tmp_path, cache_mode):
    rng = random.Random(99)
    base = os.path.realpath(tmp_path / "tree")
    os.mkdir(base)
    entries = randtree.build(base, rng)
    tr = PathTranslator("/", [], cache=cache_mode)
    dirs = [e for e in entries if os.path.isdir(os.path.join(base, e)) and not os.path.islink(os.path.join(base, e))]
    for _ in range(200):
        cwd = os.path.join(base, rng.choice(dirs)) if dirs else base
        rel = randtree.random_path(base, entries, rng)[len(base) + 1 :] or "."
        kerr, kid = kernel(os.path.join(cwd, rel), True)
        try:
            host = tr.to_host(rel, cwd=cwd)
        except GuestPathError as exc:
            assert exc.errno == kerr, (cwd, rel)
            continue
        assert kernel(host, True) == (kerr, kid), (cwd, rel, host)


def chroot_oracle(rootfs: str, paths: list[str], follow: bool = True) -> list:
    """errno or [dev, ino] of each path, looked up by a child chroot'ed into rootfs.

    Root chroots directly; another user does it in a user namespace where it is root.
    """
    code = (
        "import os, sys, json\n"
        "paths = json.loads(sys.stdin.read())\n"
        "look = os.stat if sys.argv[2] == '1' else os.lstat\n"
        "os.chroot(sys.argv[1]); os.chdir('/')\n"
        "out = []\n"
        "for p in paths:\n"
        "    try:\n"
        "        st = look(p); out.append([st.st_dev, st.st_ino])\n"
        "    except OSError as e:\n"
        "        out.append(e.errno)\n"
        "print(json.dumps(out))\n"
    )
    prefix = [] if os.geteuid() == 0 else ["unshare", "--user", "--map-root-user"]
    proc = subprocess.run(
        prefix + [sys.executable, "-c", code, rootfs, "1" if follow else "0"],
        input=json.dumps(paths),
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(proc.stdout)


def check_against_chroot(tr: PathTranslator, rootfs: str, guests: list[str], follow: bool) -> None:
    expected = chroot_oracle(rootfs, guests, follow)
    for guest, exp in zip(guests, expected, strict=True):
        try:
            host = tr.to_host(guest, follow_last=follow)
        except GuestPathError as exc:
            assert exc.errno == exp, guest
            continue
        err, ident = kernel(host, follow)
        assert (err if err is not None else list(ident)) == exp, (guest, host)


@pytest.mark.parametrize("seed", range(4))
def test_guest_root_agrees_with_chroot(tmp_path, seed, cache_mode):
    """With a real rootfs, absolute links and '..' at the root behave as in chroot(2)."""
    rng = random.Random(1000 + seed)
    rootfs = os.path.realpath(tmp_path / "rootfs")
    os.mkdir(rootfs)
    # build with guest-absolute targets: build() makes them under base, so use base='' mapping
    entries = randtree.build(rootfs, rng)
    # rewrite absolute targets from host form (rootfs/...) to guest form (/...)
    for e in entries:
        p = os.path.join(rootfs, e)
        if os.path.islink(p):
            t = os.readlink(p)
            if t.startswith(rootfs):
                os.unlink(p)
                os.symlink(t[len(rootfs) :] or "/", p)
    tr = PathTranslator(rootfs, [], cache=cache_mode)
    guests = [randtree.random_path("", entries, rng) for _ in range(300)] + ["/..", "/../..", "/../" + entries[0]]
    check_against_chroot(tr, rootfs, guests, True)
    check_against_chroot(tr, rootfs, guests, False)
