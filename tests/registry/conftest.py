"""Fixtures: one real registry per auth mode per session, with busybox images pushed."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.registry.regserver import (
    Registry,
    build_layout,
    busybox_images,
    push,
    start_registry,
)

ISOLATED_ENV = (
    "OCIRUN_AUTH_FILE",
    "OCIRUN_CONFIG",
    "OCIRUN_DEFAULT_REGISTRY",
    "OCIRUN_REGISTRY_MIRROR",
    "OCIRUN_INSECURE_REGISTRIES",
    "OCIRUN_INSECURE_LOOPBACK",
    "OCIRUN_MAX_CONCURRENT_DOWNLOADS",
    "REGISTRY_AUTH_FILE",
    "XDG_RUNTIME_DIR",
    "DOCKER_CONFIG",
    "OCIRUN_HOST_ARCH",
)


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No credentials or settings of the user running the tests leak in; fast retries."""
    for name in ISOLATED_ENV:
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("OCIRUN_PULL_BACKOFF", "0.01")
    monkeypatch.setenv("OCIRUN_PULL_RETRIES", "4")
    return home


@dataclass
class Pushed:
    """A registry with images pushed: `bb` multi-platform busybox, `single` amd64 only,
    `docker` the same content with Docker v2 media types (manifest list + schema 2)."""

    reg: Registry
    layout: Path

    def ref(self, repo_tag: str) -> str:
        return f"{self.reg.host}/{repo_tag}"


@pytest.fixture(scope="session")
def bb_layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An OCI layout: tag `multi` (amd64 + arm64/v8 index), `single` (amd64)."""
    dest = tmp_path_factory.mktemp("layout") / "bb"
    images = busybox_images()
    build_layout(dest, images, tag="multi")
    build_layout(dest, images[:1], tag="single")
    return dest


def _serve(tmp: Path, auth: str, layout: Path) -> Pushed:
    reg = start_registry(tmp, auth=auth)
    try:
        for tag in ("multi", "single"):
            push(layout, reg, f"library/busybox:{tag}", tag=tag)
            push(layout, reg, f"public/busybox:{tag}", tag=tag)
        push(layout, reg, "library/busybox:docker", tag="multi", docker_format=True)
    except BaseException:
        reg.stop()  # a fixture that fails never reaches its teardown
        raise
    return Pushed(reg, layout)


@pytest.fixture(scope="session")
def anon_registry(tmp_path_factory: pytest.TempPathFactory, bb_layout: Path) -> Iterator[Pushed]:
    p = _serve(tmp_path_factory.mktemp("reg-anon"), "none", bb_layout)
    yield p
    p.reg.stop()


@pytest.fixture(scope="session")
def basic_registry(tmp_path_factory: pytest.TempPathFactory, bb_layout: Path) -> Iterator[Pushed]:
    p = _serve(tmp_path_factory.mktemp("reg-basic"), "basic", bb_layout)
    yield p
    p.reg.stop()


@pytest.fixture(scope="session")
def token_registry(tmp_path_factory: pytest.TempPathFactory, bb_layout: Path) -> Iterator[Pushed]:
    p = _serve(tmp_path_factory.mktemp("reg-token"), "token", bb_layout)
    yield p
    p.reg.stop()
