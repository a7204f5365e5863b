"""A real Debian tree (merged /usr, alternatives, absolute and relative links) against chroot(2)."""

from __future__ import annotations

import os
import random

from ocirun.engine.path import PathTranslator
from tests.path.test_oracle import check_against_chroot

TOPS = ("/etc", "/usr/bin", "/usr/sbin", "/usr/lib/x86_64-linux-gnu", "/etc/alternatives", "/var", "/usr/share/zoneinfo")
ALIASES = (("/usr/bin/", "/bin/"), ("/usr/lib/", "/lib/"), ("/usr/sbin/", "/sbin/"), ("/usr/lib64/", "/lib64/"))


def guest_paths(rootfs: str, rng: random.Random, limit: int = 2500) -> list[str]:
    """Entries of the usual directories, some through the merged-/usr links, with '..', '/' and '.'."""
    out: list[str] = []
    for top in TOPS:
        for dirpath, dirnames, filenames in os.walk(rootfs + top):
            guest = dirpath[len(rootfs) :]
            out.extend(guest + "/" + n for n in dirnames + filenames)
            if len(out) > limit:
                break
    rng.shuffle(out)
    out = out[:limit]
    varied = []
    for p in out:
        for real, alias in ALIASES:
            if p.startswith(real) and rng.random() < 0.5:
                p = alias + p[len(real) :]
        r = rng.random()
        if r < 0.1:
            p += "/"
        elif r < 0.15:
            p += "/.."
        elif r < 0.2:
            p = p.replace("/", "/../" if rng.random() < 0.5 else "/./", 1)
        varied.append(p)
    return varied + ["/bin/sh", "/usr/bin/awk", "/etc/alternatives/awk", "/lib64/ld-linux-x86-64.so.2", "/proc/.."]


def test_debian_tree_agrees_with_chroot(debian_rootfs):
    rootfs = str(debian_rootfs)
    paths = guest_paths(rootfs, random.Random(7))
    for cache in (True, False):
        tr = PathTranslator(rootfs, [], cache=cache)
        for _ in range(2):  # the second round is answered from the cache
            check_against_chroot(tr, rootfs, paths, True)
            check_against_chroot(tr, rootfs, paths, False)


def test_debian_reverse_translation(debian_rootfs):
    rootfs = str(debian_rootfs)
    tr = PathTranslator(rootfs, [])
    for p in ("/bin/sh", "/usr/bin/awk", "/lib64/ld-linux-x86-64.so.2", "/etc/os-release"):
        host = tr.to_host(p)
        assert host.startswith(rootfs + "/")
        assert tr.to_guest(host) == tr.canonical(p) == os.path.realpath(host)[len(rootfs) :]
