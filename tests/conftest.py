"""Shared fixtures: the cached root filesystems and small busybox trees.

Cached fixtures are built by ``sudo scripts/fixtures`` (``scripts/test`` runs it)
under $OCIRUN_TEST_FIXTURES (default /var/tmp/ocirun-fixtures). A missing one makes
the test FAIL with that advice, never skip. The cached trees are shared by every
test and every user: use them read-only (they are root-owned and world-readable);
a test whose guest writes takes ``debian_rootfs_copy`` (or copies) instead.

Fixtures:
  fixtures_dir              Path  the cached fixtures directory (session)
  test_data_dir             Path  tests/fixtures/, small files kept in git (session)
  debian_rootfs             Path  bookworm minbase amd64 tree, read-only (session)
  debian_rootfs_tar         Path  the same tree as a tarball (session)
  debian_rootfs_copy        Path  a private writable copy of debian_rootfs (function)
  debian_arm64_rootfs       Path  bookworm arm64 tree: essential + bash coreutils dpkg apt (session)
  debian_arm64_rootfs_tar   Path  the same as a tarball (session)
  busybox_rootfs            Path  fresh amd64 busybox tree in tmp_path (function)
  busybox_arm64_rootfs      Path  the same with the arm64 busybox-static (function)
  busybox_armhf_rootfs      Path  the same with the armhf busybox-static (function)
  busybox_arm64_binary      Path  bin/busybox of busybox-static:arm64 in the cache (session)
  busybox_armhf_binary      Path  bin/busybox of busybox-static:armhf in the cache (session)
  busybox_i386_binary       Path  bin/busybox of busybox-static:i386 in the cache (session)
  busybox_i386_rootfs       Path  a busybox tree with it (native on x86_64: the i386 ABI) (function)
  registry_images           TestImages  one anonymous docker-registry on 127.0.0.1 with
                            test/busybox:latest (amd64+arm64) and test/debian:12 (amd64,
                            + arm64 when cached) pushed; .busybox/.debian are full refs,
                            .host is 127.0.0.1:PORT (session; started on first use)
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT, fixtures_root
from tests.helpers.images import TestImages, busybox_layout, debian_layout
from tests.helpers.trees import HOST_BUSYBOX, copy_tree, make_busybox_tree

DEBIAN_AMD64 = "debian-bookworm-amd64"
DEBIAN_ARM64 = "debian-bookworm-arm64"
BUSYBOX_ARM64 = "busybox-static-arm64"
BUSYBOX_ARMHF = "busybox-static-armhf"
BUSYBOX_I386 = "busybox-static-i386"


def _missing(what: str, path: Path) -> None:
    pytest.fail(
        f"cached test fixture {what} is missing or incomplete at {path}: "
        f"run `sudo scripts/fixtures` (or `sudo scripts/test`) first",
        pytrace=False,
    )


def cached_fixture(name: str) -> Path:
    """The cached fixture NAME (a directory), complete only once scripts/fixtures wrote its key."""
    root = fixtures_root()
    path = root / name
    if not path.is_dir() or not (root / f"{name}.key").is_file():
        _missing(name, path)
    return path


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    root = fixtures_root()
    if not root.is_dir():
        _missing("directory", root)
    return root


@pytest.fixture(scope="session")
def test_data_dir() -> Path:
    return REPO_ROOT / "tests" / "fixtures"


@pytest.fixture(scope="session")
def debian_rootfs() -> Path:
    path = cached_fixture(DEBIAN_AMD64)
    if not (path / "usr/bin/bash").is_file():
        _missing(DEBIAN_AMD64, path)
    return path


@pytest.fixture(scope="session")
def debian_rootfs_tar(debian_rootfs: Path) -> Path:
    tar = debian_rootfs.parent / f"{DEBIAN_AMD64}.tar"
    if not tar.is_file():
        _missing(f"{DEBIAN_AMD64}.tar", tar)
    return tar


@pytest.fixture
def debian_rootfs_copy(debian_rootfs: Path, tmp_path: Path) -> Path:
    """A private copy of the Debian tree that the guest may change (about 1-2 s)."""
    return copy_tree(debian_rootfs, tmp_path / "debian-rootfs")


@pytest.fixture(scope="session")
def debian_arm64_rootfs() -> Path:
    path = cached_fixture(DEBIAN_ARM64)
    if not (path / "usr/bin/bash").is_file():
        _missing(DEBIAN_ARM64, path)
    return path


@pytest.fixture(scope="session")
def debian_arm64_rootfs_tar(debian_arm64_rootfs: Path) -> Path:
    tar = debian_arm64_rootfs.parent / f"{DEBIAN_ARM64}.tar"
    if not tar.is_file():
        _missing(f"{DEBIAN_ARM64}.tar", tar)
    return tar


def _busybox_binary(name: str) -> Path:
    binary = cached_fixture(name) / "bin/busybox"
    if not binary.is_file():
        _missing(name, binary)
    return binary


@pytest.fixture(scope="session")
def busybox_arm64_binary() -> Path:
    return _busybox_binary(BUSYBOX_ARM64)


@pytest.fixture(scope="session")
def busybox_armhf_binary() -> Path:
    return _busybox_binary(BUSYBOX_ARMHF)


@pytest.fixture(scope="session")
def busybox_i386_binary() -> Path:
    return _busybox_binary(BUSYBOX_I386)


@pytest.fixture
def busybox_rootfs(tmp_path: Path) -> Path:
    """A fresh amd64 busybox tree (Debian's busybox-static): tests may change it freely."""
    if not HOST_BUSYBOX.is_file():
        pytest.fail(
            f"{HOST_BUSYBOX} is missing: install busybox-static (sudo scripts/test does)",
            pytrace=False,
        )
    return make_busybox_tree(tmp_path / "busybox-rootfs")


@pytest.fixture
def busybox_arm64_rootfs(tmp_path: Path, busybox_arm64_binary: Path) -> Path:
    return make_busybox_tree(tmp_path / "busybox-arm64-rootfs", busybox_arm64_binary)


@pytest.fixture
def busybox_armhf_rootfs(tmp_path: Path, busybox_armhf_binary: Path) -> Path:
    return make_busybox_tree(tmp_path / "busybox-armhf-rootfs", busybox_armhf_binary)


@pytest.fixture
def busybox_i386_rootfs(tmp_path: Path, busybox_i386_binary: Path) -> Path:
    return make_busybox_tree(tmp_path / "busybox-i386-rootfs", busybox_i386_binary)


@pytest.fixture(scope="session")
def registry_images(
    tmp_path_factory: pytest.TempPathFactory, debian_rootfs: Path, busybox_arm64_binary: Path
) -> TestImages:
    """One anonymous loopback registry holding the shared test images (stopped at the end)."""
    from tests.registry.regserver import push, start_registry

    arm64 = (fixtures_root() / f"{DEBIAN_ARM64}.key").is_file()
    bb_layout, bb_platforms = busybox_layout(busybox_arm64_binary)
    deb_layout, deb_platforms = debian_layout(arm64)
    reg = start_registry(tmp_path_factory.mktemp("registry"), auth="none")
    try:
        push(bb_layout, reg, "test/busybox:latest")
        push(deb_layout, reg, "test/debian:12")
        yield TestImages(
            host=reg.host,
            busybox=f"{reg.host}/test/busybox:latest",
            debian=f"{reg.host}/test/debian:12",
            busybox_platforms=bb_platforms,
            debian_platforms=deb_platforms,
            registry=reg,
        )
    finally:
        reg.stop()
