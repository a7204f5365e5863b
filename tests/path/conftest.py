"""Real directory trees for the path tests (no mocks: real dirs, files and symlinks)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ocirun.engine.path.fsview import HostFs


class CountingFs(HostFs):
    """The real HostFs, counting the host queries the resolver makes."""

    __slots__ = ("lstats", "readlinks")

    def __init__(self) -> None:
        self.lstats = 0
        self.readlinks = 0

    def lstat_kind(self, host_path: str) -> int:
        self.lstats += 1
        return super().lstat_kind(host_path)

    def readlink(self, host_path: str) -> str:
        self.readlinks += 1
        return super().readlink(host_path)

    @property
    def queries(self) -> int:
        return self.lstats + self.readlinks


def make_rootfs(root: Path) -> Path:
    """A small guest tree with the symlink shapes a distribution has (merged /usr etc.)."""
    for d in ("etc", "usr/lib/x86_64-linux-gnu", "usr/bin", "dir/sub/deep", "tmp", "var"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "etc/passwd").write_text("guest passwd\n")
    (root / "usr/lib/x86_64-linux-gnu/libc.so.6").write_text("libc")
    (root / "usr/bin/sh").write_text("sh")
    (root / "file").write_text("file")
    links = {
        "lib": "usr/lib",  # relative, merged-usr style
        "bin": "/usr/bin",  # absolute
        "abs_etc": "/etc",  # absolute: must stay in the guest
        "escape": "../../../..",
        "escape2": "/../../..",
        "loop1": "loop2",
        "loop2": "loop1",
        "self": "self",
        "dangling": "/nonexistent/x",
        "dangling2": "newfile",
        "dir/up": "..",
        "dir/sub/toroot": "../../",
        "dir/sub/rel_etc": "../../etc",
        "to_file": "file",
        "to_etc_slash": "etc/",
        "var/run": "/run",
    }
    for name, target in links.items():
        os.symlink(target, root / name)
    # a chain of 5 links ending in /etc
    os.symlink("/etc", root / "c5")
    for i in range(4, -1, -1):
        os.symlink(f"c{i + 1}", root / f"c{i}")
    return root


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    return make_rootfs(tmp_path / "rootfs")


@pytest.fixture
def hostdir(tmp_path: Path) -> Path:
    """A host directory outside the rootfs, to bind in."""
    d = tmp_path / "host"
    (d / "sub").mkdir(parents=True)
    (d / "hostfile").write_text("host")
    (d / "sub/inner").write_text("inner")
    os.symlink("/etc", d / "abs_link")  # absolute target: resolved in the GUEST
    os.symlink("sub", d / "rel_link")
    return d


@pytest.fixture(params=[True, False], ids=["cache", "nocache"])
def cache_mode(request) -> bool:
    return request.param
