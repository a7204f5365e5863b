"""The shared test images (OCI layouts) pushed by the ``registry_images`` fixture.

  test/busybox:latest   linux/amd64 + linux/arm64/v8: Debian's busybox-static
  test/debian:12        linux/amd64 (+ linux/arm64/v8 when the arm64 tree is cached):
                        one gzip layer, the cached mmdebstrap bookworm tarball

Layouts are built once per fixture version and cached beside the fixtures
($OCIRUN_TEST_FIXTURES/layouts when writable, else /var/tmp/ocirun-fixtures-UID/layouts),
so a test session only starts a registry and pushes (skopeo), which takes seconds.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from tests.helpers import fixtures_root
from tests.helpers.trees import HOST_BUSYBOX

LAYOUT_VERSION = 1
DEBIAN_ENV = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]


@dataclass
class TestImages:
    """References of the shared images in the running loopback registry."""

    __test__ = False  # not a test class, whatever its name

    host: str  # 127.0.0.1:PORT
    busybox: str  # 127.0.0.1:PORT/test/busybox:latest
    debian: str  # 127.0.0.1:PORT/test/debian:12
    busybox_platforms: list[str] = field(default_factory=list)
    debian_platforms: list[str] = field(default_factory=list)
    registry: object = None  # tests.registry.regserver.Registry


def _key(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _fixture_key(name: str) -> str:
    return (fixtures_root() / f"{name}.key").read_text().strip()


def _cache_dirs() -> list[Path]:
    return [fixtures_root() / "layouts", Path(f"/var/tmp/ocirun-fixtures-{os.getuid()}/layouts")]


def cached_layout(name: str, key: str, build) -> Path:
    """The layout NAME for KEY, built by ``build(dest)`` when no cache has it yet."""
    for d in _cache_dirs():
        if (d / f"{name}-{key}" / "index.json").is_file():
            return d / f"{name}-{key}"
    for d in _cache_dirs():
        try:
            d.mkdir(parents=True, exist_ok=True)
            if os.access(d, os.W_OK):
                break
        except OSError:
            continue
    else:
        raise RuntimeError(f"no writable layout cache among {_cache_dirs()}")
    final = d / f"{name}-{key}"
    work = Path(tempfile.mkdtemp(dir=d, prefix=f".{name}-"))
    try:
        build(work / "layout")
        os.chmod(work, 0o755)
        try:
            os.rename(work / "layout", final)
        except OSError:
            if not (final / "index.json").is_file():  # lost a race: fine if the other won
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return final


def busybox_layout(arm64_busybox: Path) -> tuple[Path, list[str]]:
    from tests.registry.regserver import ImageSpec, build_layout, busybox_layer

    platforms = ["linux/amd64", "linux/arm64/v8"]
    binaries = [HOST_BUSYBOX, arm64_busybox]
    key = _key(f"v{LAYOUT_VERSION}", *(hashlib.sha256(b.read_bytes()).hexdigest() for b in binaries))

    def build(dest: Path) -> None:
        specs = [
            ImageSpec(p, [busybox_layer(b), {"etc/hostname": ("file", f"{p}\n".encode(), 0o644)}])
            for p, b in zip(platforms, binaries, strict=True)
        ]
        build_layout(dest, specs, tag="latest", multi=True)

    return cached_layout("busybox", key, build), platforms


def debian_layout(arm64: bool) -> tuple[Path, list[str]]:
    from tests.registry.regserver import ImageSpec, build_layout

    trees = [("linux/amd64", "debian-bookworm-amd64")]
    if arm64:
        trees.append(("linux/arm64/v8", "debian-bookworm-arm64"))
    key = _key(f"v{LAYOUT_VERSION}", *(f"{p}={_fixture_key(n)}" for p, n in trees))

    def build(dest: Path) -> None:
        specs = [
            ImageSpec(
                p,
                [(fixtures_root() / f"{n}.tar").read_bytes()],
                config={"config": {"Env": DEBIAN_ENV, "Cmd": ["bash"]}},
            )
            for p, n in trees
        ]
        build_layout(dest, specs, tag="12", multi=True)

    return cached_layout("debian", key, build), [p for p, _ in trees]
