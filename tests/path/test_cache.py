"""The resolution cache: fewer host queries, and never a stale answer after the guest's own mutations."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from ocirun.engine.path import GuestPathError, PathTranslator, parse_bind_spec
from tests.path import randtree
from tests.path.conftest import CountingFs


def outcome(tr: PathTranslator, path: str, follow: bool, cwd: str = "/") -> tuple:
    try:
        r = tr.resolve(path, cwd=cwd, follow_last=follow)
    except GuestPathError as exc:
        return ("error", exc.errno)
    glue = tr.glue_root
    if glue and r.host.startswith(glue + "/"):
        return (r.guest, "GLUE" + r.host[len(glue) :])
    return (r.guest, r.host)


def test_env_switch(monkeypatch, rootfs):
    monkeypatch.setenv("OCIRUN_PATH_CACHE", "0")
    assert not PathTranslator(str(rootfs), []).cache_enabled
    monkeypatch.setenv("OCIRUN_PATH_CACHE", "1")
    assert PathTranslator(str(rootfs), []).cache_enabled
    monkeypatch.delenv("OCIRUN_PATH_CACHE")
    assert PathTranslator(str(rootfs), []).cache_enabled


def test_warm_lookup_costs_no_host_query(rootfs):
    fs = CountingFs()
    tr = PathTranslator(str(rootfs), [], fs=fs, cache=True)
    libc = "/lib/x86_64-linux-gnu/libc.so.6"
    tr.to_host(libc)
    cold = fs.queries
    assert cold >= 4
    for _ in range(10):
        assert tr.to_host(libc) == str(rootfs) + "/usr/lib/x86_64-linux-gnu/libc.so.6"
    assert fs.queries == cold
    # a sibling in a known directory: one lstat for the new leaf only
    before = fs.queries
    tr.to_host("/usr/lib/x86_64-linux-gnu/other.so")
    assert fs.queries - before == 1
    # through the cached /lib symlink too
    before = fs.queries
    tr.to_host("/lib/x86_64-linux-gnu/third.so")
    assert fs.queries - before == 1


def test_without_cache_every_component_is_queried(rootfs):
    fs = CountingFs()
    tr = PathTranslator(str(rootfs), [], fs=fs, cache=False)
    tr.to_host("/usr/lib/x86_64-linux-gnu/libc.so.6")
    first = fs.queries
    tr.to_host("/usr/lib/x86_64-linux-gnu/libc.so.6")
    assert fs.queries == 2 * first == 8


def test_rename_dir_is_seen(rootfs):
    tr = PathTranslator(str(rootfs), [], cache=True)
    assert tr.to_host("/dir/sub/deep") == str(rootfs) + "/dir/sub/deep"
    os.rename(tr.to_host("/dir/sub", follow_last=False), tr.to_host("/dir/moved", follow_last=False))
    tr.invalidate(str(rootfs) + "/dir/sub")
    tr.invalidate(str(rootfs) + "/dir/moved")
    with pytest.raises(GuestPathError):
        tr.to_host("/dir/sub/deep/x")
    assert tr.to_host("/dir/moved/deep") == str(rootfs) + "/dir/moved/deep"


def test_dir_replaced_by_symlink(rootfs):
    tr = PathTranslator(str(rootfs), [], cache=True)
    assert tr.to_host("/var/x") == str(rootfs) + "/var/x"
    (rootfs / "var2").mkdir()
    os.rename(rootfs / "var", rootfs / "var_old")
    tr.invalidate(str(rootfs) + "/var")
    tr.invalidate(str(rootfs) + "/var_old")
    os.symlink("/etc", rootfs / "var")
    tr.invalidate(str(rootfs) + "/var")
    assert tr.to_host("/var/passwd") == str(rootfs) + "/etc/passwd"
    assert tr.canonical("/var/") == "/etc"


def test_removed_and_recreated(rootfs):
    tr = PathTranslator(str(rootfs), [], cache=True)
    assert tr.to_host("/dir/sub/deep/") == str(rootfs) + "/dir/sub/deep/"
    os.rmdir(rootfs / "dir/sub/deep")
    tr.invalidate(str(rootfs) + "/dir/sub/deep/")  # as to_host gave it: trailing '/' ignored
    with pytest.raises(GuestPathError):
        tr.to_host("/dir/sub/deep/x")
    (rootfs / "dir/sub/deep").write_text("now a file")  # creat: no invalidation
    with pytest.raises(GuestPathError) as info:
        tr.to_host("/dir/sub/deep/x")
    assert info.value.errno == 20  # ENOTDIR, not a stale ENOENT


def test_invalidate_through_binding_alias(rootfs):
    """One host dir seen at two guest paths: a mutation through one is seen through the other."""
    tr = PathTranslator(str(rootfs), [parse_bind_spec(f"{rootfs}/dir:/alias")], cache=True)
    assert tr.to_host("/alias/sub/deep") == str(rootfs) + "/dir/sub/deep"
    assert tr.to_host("/dir/sub/deep") == str(rootfs) + "/dir/sub/deep"
    os.rmdir(rootfs / "dir/sub/deep")
    os.symlink("/etc", rootfs / "dir/sub/deep")
    tr.invalidate(tr.to_host("/alias/sub/deep", follow_last=False))
    assert tr.to_host("/dir/sub/deep/passwd") == str(rootfs) + "/etc/passwd"
    assert tr.to_host("/alias/sub/deep/passwd") == str(rootfs) + "/etc/passwd"


def test_invalidate_all_and_root(rootfs):
    tr = PathTranslator(str(rootfs), [], cache=True)
    tr.to_host("/lib/x86_64-linux-gnu")
    os.unlink(rootfs / "lib")
    os.symlink("etc", rootfs / "lib")
    tr.invalidate_all()
    assert tr.to_host("/lib/passwd") == str(rootfs) + "/etc/passwd"
    os.unlink(rootfs / "lib")
    os.symlink("usr/lib", rootfs / "lib")
    tr.invalidate("/")
    assert tr.to_host("/lib/x86_64-linux-gnu") == str(rootfs) + "/usr/lib/x86_64-linux-gnu"


# ------------------------------------------------------ property: cache == no cache


def _guest_paths(rng: random.Random, names: list[str]) -> str:
    depth = rng.randint(1, 4)
    parts = [rng.choice(names) for _ in range(depth)]
    for i in range(len(parts)):
        if rng.random() < 0.1:
            parts[i] = ".."
    return "/" + "/".join(parts) + rng.choice(["", "", "", "/"])


class Guest:
    """Applies random guest mutations on the host, telling the cached translator as the engine would."""

    def __init__(self, ref: PathTranslator, cached: PathTranslator, rng: random.Random, names: list[str]):
        self.ref, self.cached, self.rng, self.names = ref, cached, rng, names

    def host(self, guest: str) -> str | None:
        try:
            host = self.ref.to_host(guest, follow_last=False)
        except GuestPathError:
            return None
        glue = self.ref.glue_root
        if glue and host.startswith(glue + "/"):
            return None  # each translator has its private glue tree: not a shared guest tree
        return host

    def step(self) -> None:
        rng = self.rng
        op = rng.choice(["mkdir", "rmdir", "unlink", "symlink", "rename", "creat", "rename"])
        a = self.host(_guest_paths(rng, self.names))
        b = self.host(_guest_paths(rng, self.names))
        if a is None or b is None:
            return
        touched = [a]
        try:
            if op == "mkdir":
                os.mkdir(a)
            elif op == "rmdir":
                os.rmdir(a)
            elif op == "unlink":
                os.unlink(a.rstrip("/"))
            elif op == "symlink":
                target = rng.choice(["/", "..", "../..", "a", "/b/c", "c/", "/a/../b", "x"])
                os.symlink(target, a.rstrip("/"))
            elif op == "rename":
                os.rename(a, b)
                touched.append(b)
            elif op == "creat":
                os.close(os.open(a.rstrip("/"), os.O_CREAT | os.O_WRONLY, 0o644))
                touched = []  # not an invalidation event for the engine
        except OSError:
            return
        for h in touched:
            self.cached.invalidate(h)


@pytest.mark.parametrize("seed", range(12))
def test_cache_matches_no_cache_on_random_mutations(tmp_path: Path, seed: int):
    rng = random.Random(seed)
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    entries = randtree.build(str(rootfs), rng, n_dirs=10, n_files=6, n_links=8)
    # absolute targets in guest form (the tree was built with host-absolute targets)
    for e in entries:
        p = rootfs / e
        if p.is_symlink() and os.readlink(p).startswith(str(rootfs)):
            t = os.readlink(p)[len(str(rootfs)) :] or "/"
            p.unlink()
            os.symlink(t, p)
    (tmp_path / "bound/x").mkdir(parents=True)
    specs = [f"{rootfs}:/b/alias", f"{tmp_path}/bound:/f/glue"]
    bindings = [parse_bind_spec(s) for s in specs]
    ref = PathTranslator(str(rootfs), bindings, cache=False)
    cached = PathTranslator(str(rootfs), bindings, cache=True)
    names = list(randtree.NAMES) + ["alias", "glue", "x", "b", "f"]
    guest = Guest(ref, cached, rng, names)
    probes = [_guest_paths(rng, names) for _ in range(60)]
    try:
        for _ in range(40):
            guest.step()
            for p in probes + [_guest_paths(rng, names) for _ in range(10)]:
                for follow in (True, False):
                    assert outcome(cached, p, follow) == outcome(ref, p, follow), p
                    cwd = rng.choice(["/", "/a", "/b/alias"])
                    rel = p.lstrip("/") or "."
                    assert outcome(cached, rel, follow, cwd) == outcome(ref, rel, follow, cwd)
    finally:
        ref.close()
        cached.close()


def test_invalidate_an_ancestor_of_the_rootfs(tmp_path):
    """The guest moves a host directory that contains its own rootfs (seen through a binding)."""
    from tests.path.conftest import make_rootfs

    rootfs = make_rootfs(tmp_path / "a/rootfs")
    tr = PathTranslator(str(rootfs), [parse_bind_spec(f"{tmp_path}:/outer")], cache=True)
    assert tr.to_host("/etc/passwd") == str(rootfs) + "/etc/passwd"
    assert tr.to_host("/lib/x86_64-linux-gnu") == str(rootfs) + "/usr/lib/x86_64-linux-gnu"
    src = tr.to_host("/outer/a", follow_last=False)
    dst = tr.to_host("/outer/b", follow_last=False)
    os.rename(src, dst)
    tr.invalidate(src)
    tr.invalidate(dst)
    with pytest.raises(GuestPathError):
        tr.to_host("/lib/x86_64-linux-gnu/libc.so.6")
    with pytest.raises(GuestPathError):
        tr.to_host("/etc/passwd/")
    assert tr.to_host("/outer/b/rootfs/etc/passwd") == str(tmp_path / "b/rootfs/etc/passwd")
