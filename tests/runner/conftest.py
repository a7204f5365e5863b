"""Runner fixtures: one image store per session with the loopback registry's images pulled."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import run_ocirun


class Ocirun:
    """`ocirun --root STORE ...` for one store."""

    def __init__(self, root: Path, images):
        self.root = root
        self.images = images

    def __call__(self, *args, **kw):
        return run_ocirun("--root", self.root, *args, **kw)


@pytest.fixture(scope="session")
def runner_store(tmp_path_factory: pytest.TempPathFactory, registry_images) -> Ocirun:
    """A store with test/busybox and test/debian:12 (host platform) already pulled."""
    root = tmp_path_factory.mktemp("runner-store")
    o = Ocirun(root, registry_images)
    for ref in (registry_images.busybox, registry_images.debian):
        cp = o("pull", ref, timeout=600)
        assert cp.returncode == 0, cp.stderr
    return o


@pytest.fixture
def oc(runner_store: Ocirun) -> Ocirun:
    return runner_store
