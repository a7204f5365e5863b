"""Pulls from the real loopback docker-registry into the store (registry.pull's client)."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from layers.store import Store
from tests.registry.regserver import build_layout, busybox_images, push, start_registry

BUSYBOX = "/bin/busybox"


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("registry")
    reg = start_registry(tmp / "reg")
    layout = build_layout(tmp / "layout", busybox_images(), tag="1")
    push(layout, reg, "library/busybox:1")
    single = build_layout(tmp / "single", busybox_images(("linux/amd64",)), tag="amd")
    push(single, reg, "library/bbamd:amd")
    yield reg
    reg.stop()


def _machine(path) -> int:
    with open(path, "rb") as f:
        return int.from_bytes(f.read(20)[18:20], "little")


def test_pull_multi_platform_amd64_and_arm64(registry, tmp_path):
    store = Store.open(tmp_path)
    ref = f"{registry.host}/library/busybox:1"
    amd = store.pull(ref, platform="linux/amd64", progress=False)
    arm = store.pull(ref, platform="linux/arm64", progress=False)
    assert amd.id != arm.id
    assert _machine(amd.rootfs / "bin/busybox") == 62  # EM_X86_64
    assert _machine(arm.rootfs / "bin/busybox") == 183  # EM_AARCH64
    assert (arm.rootfs / "etc/hostname").read_text() == "arm64\n"
    assert os.readlink(amd.rootfs / "bin/sh") == "busybox"
    assert store.resolve(ref, platform="linux/arm64/v8").id == arm.id
    assert store.resolve(ref).id == amd.id
    out = subprocess.run([str(amd.rootfs / "bin/busybox"), "echo", "hi"], capture_output=True, text=True)
    assert out.stdout == "hi\n"
    assert arm.repo_digests and arm.repo_digests == amd.repo_digests  # the index's digest


def test_second_pull_is_cached_and_fast(registry, tmp_path):
    store = Store.open(tmp_path)
    ref = f"{registry.host}/library/bbamd:amd"
    first = store.pull(ref, progress=False)
    layer_mtimes = {d: store.blobs.path(d).stat().st_mtime_ns for d in first.layers}
    t0 = time.monotonic()
    again = store.pull(ref, progress=False)
    assert time.monotonic() - t0 < 1.0
    assert again.id == first.id and again.rootfs == first.rootfs
    assert {d: store.blobs.path(d).stat().st_mtime_ns for d in first.layers} == layer_mtimes


def test_pull_of_corrupt_blob_leaves_store_as_it_was(registry, tmp_path):
    """A registry serving wrong bytes for a layer: one-line error, nothing stored."""
    from ocirun.errors import OcirunError

    bad = build_layout(tmp_path / "bad", busybox_images(("linux/amd64",)), tag="bad")
    push(bad, registry, "library/corrupt:bad")
    store = Store.open(tmp_path / "store")
    import json

    idx = json.loads((bad / "index.json").read_text())
    man = json.loads((bad / "blobs/sha256" / idx["manifests"][0]["digest"].split(":")[1]).read_text())
    layer = man["layers"][0]["digest"]
    data = registry.blob_data_path(layer)
    data.chmod(0o644)
    raw = bytearray(data.read_bytes())
    raw[100] ^= 0xFF
    data.write_bytes(bytes(raw))
    with pytest.raises(OcirunError):
        store.pull(f"{registry.host}/library/corrupt:bad", progress=False)
    assert store.list_images() == []
    assert not store.blobs.has(layer)
