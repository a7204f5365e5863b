"""docker save tarballs and OCI layouts: load_archive and the archive transports."""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from ocirun.errors import OcirunError
from registry.archive import load_archive
from registry.platform import Platform
from registry.pull import pull_image
from registry.types import PulledImage
from tests.registry.dirsink import DirectorySink
from tests.registry.regserver import ImageSpec, build_docker_archive, make_tar, tar_dir

ARM = Platform.parse("arm64")


def _check(img: PulledImage, sink: DirectorySink) -> None:
    for d in [img.manifest_digest, img.config_digest, *(x.digest for x in img.layers)]:
        assert hashlib.sha256(sink.path(d).read_bytes()).hexdigest() == d.split(":")[1]
    assert sink.path(img.manifest_digest).read_bytes() == img.manifest
    assert not list((sink.root / "tmp").iterdir())


def _specs() -> list[ImageSpec]:
    shared = {"bin/": ("dir",), "bin/tool": b"#!/bin/sh\necho shared\n"}
    return [
        ImageSpec("linux/amd64", [shared, {"etc/hostname": ("file", b"one\n", 0o644)}]),
        ImageSpec("linux/arm64/v8", [shared, {"etc/hostname": ("file", b"two\n", 0o644)}]),
    ]


def test_skopeo_docker_archive(bb_layout: Path, tmp_path: Path) -> None:
    """An archive written by a real tool (containers/image's docker-archive)."""
    arc = tmp_path / "bb.tar"
    subprocess.run(["skopeo", "--insecure-policy", "copy", "-q", f"oci:{bb_layout}:single", f"docker-archive:{arc}:busybox:1"], check=True)
    sink = DirectorySink(tmp_path / "s")
    [img] = load_archive(arc, sink)
    assert (img.name, img.tag, str(img.platform), img.source) == ("docker.io/library/busybox", "1", "linux/amd64", "docker-archive")
    assert [x.digest for x in img.layers] == img.diff_ids()
    _check(img, sink)
    again = pull_image(f"docker-archive:{arc}", None, DirectorySink(tmp_path / "s2"), progress=False)
    assert again.manifest_digest == img.manifest_digest
    assert pull_image(f"docker-archive:{arc}:busybox:1", None, sink).tag == "1"
    with pytest.raises(OcirunError, match="manifest for docker-archive:.* not found: the archive holds .*busybox:1"):
        pull_image(f"docker-archive:{arc}:busybox:2", None, sink)
    with pytest.raises(OcirunError, match="no image for platform linux/arm64/v8 .* available: linux/amd64"):
        pull_image(f"docker-archive:{arc}", ARM, sink)


@pytest.mark.parametrize("style", ["legacy", "oci"])
def test_docker_save_formats_multi_image(tmp_path: Path, style: str) -> None:
    one, two = _specs()
    arc = build_docker_archive(tmp_path / "save.tar", [(one, ["app:1", "reg.example:5000/app:latest"]), (two, [])], style=style)
    sink = DirectorySink(tmp_path / "s")
    imgs = load_archive(arc, sink)
    assert [(i.name, i.tag) for i in imgs] == [("docker.io/library/app", "1"), ("reg.example:5000/app", "latest"), (None, None)]
    assert str(imgs[2].platform) == "linux/arm64/v8"
    assert imgs[0].layers[0].digest == imgs[2].layers[0].digest  # shared layer stored once
    for img in imgs:
        _check(img, sink)
    second = pull_image(f"docker-archive:{arc}:@1", None, DirectorySink(tmp_path / "p"))
    assert second.config_digest == imgs[2].config_digest
    with pytest.raises(OcirunError, match="holds 2 images; name one: app:1, reg.example:5000/app:latest"):
        pull_image(f"docker-archive:{arc}", None, sink)


@pytest.mark.parametrize("how", ["gzip", "bz2", "xz", "zstd"])
def test_compressed_docker_save(tmp_path: Path, how: str) -> None:
    """`docker save | gzip` (and bzip2, xz, zstd) load like the plain tar."""
    import bz2
    import lzma

    import zstandard

    one, two = _specs()
    arc = build_docker_archive(tmp_path / "save.tar", [(one, ["app:1"]), (two, ["app:2"])])
    squash = {"gzip": gzip.compress, "bz2": bz2.compress, "xz": lzma.compress, "zstd": zstandard.ZstdCompressor().compress}[how]
    packed = tmp_path / f"save.tar.{how}"
    packed.write_bytes(squash(arc.read_bytes()))
    sink = DirectorySink(tmp_path / "s")
    imgs = load_archive(packed, sink)
    assert [i.tag for i in imgs] == ["1", "2"]
    for img in imgs:
        _check(img, sink)


def test_oci_layout_dir_and_archive(bb_layout: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sink = DirectorySink(tmp_path / "s")
    arm = pull_image(f"oci:{bb_layout}:multi", ARM, sink)
    assert (str(arm.platform), arm.tag, arm.name, arm.source) == ("linux/arm64/v8", "multi", None, "oci")
    assert arm.repo_digest != arm.manifest_digest and sink.has(arm.repo_digest)
    _check(arm, sink)
    monkeypatch.setenv("OCIRUN_HOST_ARCH", "x86_64")
    imgs = load_archive(bb_layout, sink)
    assert [(i.tag, str(i.platform)) for i in imgs] == [("multi", "linux/amd64"), ("single", "linux/amd64")]
    arc = tar_dir(bb_layout, tmp_path / "layout.tar")
    via_tar = pull_image(f"oci-archive:{arc}:multi", ARM, DirectorySink(tmp_path / "t"))
    assert via_tar.manifest_digest == arm.manifest_digest
    assert [i.tag for i in load_archive(arc, DirectorySink(tmp_path / "u"), ARM)] == ["multi", "single"]
    with pytest.raises(OcirunError, match=r"holds 2 images; name one: multi, single"):
        pull_image(f"oci:{bb_layout}", None, sink)
    with pytest.raises(OcirunError, match=r"not found: the layout names multi, single"):
        pull_image(f"oci:{bb_layout}:nope", None, sink)
    with pytest.raises(OcirunError, match=r"no image for platform linux/s390x .* available: linux/amd64, linux/arm64/v8"):
        pull_image(f"oci:{bb_layout}:multi", Platform.parse("s390x"), sink)


def test_corrupt_oci_blob_is_refused(bb_layout: Path, tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    shutil.copytree(bb_layout, layout)
    sink = DirectorySink(tmp_path / "s")
    good = pull_image(f"oci:{layout}:single", None, DirectorySink(tmp_path / "probe"))
    victim = good.layers[1]  # the small layer
    blob = layout / "blobs/sha256" / victim.digest.split(":")[1]
    blob.chmod(0o644)
    data = bytearray(blob.read_bytes())
    data[-1] ^= 1
    blob.write_bytes(bytes(data))
    with pytest.raises(OcirunError, match=f"^blob {victim.digest} does not match its digest$"):
        pull_image(f"oci:{layout}:single", None, sink)
    assert not sink.has(victim.digest)
    assert not list((sink.root / "tmp").iterdir())


def _rewrite_tar(src: Path, dest: Path, change: dict[str, bytes]) -> None:
    with tarfile.open(src) as tin, tarfile.open(dest, "w") as tout:
        for m in tin.getmembers():
            f = tin.extractfile(m) if m.isfile() else None
            data = change.get(m.name, f.read() if f else None)
            if data is not None:
                m.size = len(data)
                tout.addfile(m, __import__("io").BytesIO(data))
            else:
                tout.addfile(m)


def test_docker_archive_layer_not_matching_diff_id(tmp_path: Path) -> None:
    arc = build_docker_archive(tmp_path / "save.tar", [(_specs()[0], ["app:1"])])
    manifest = json.loads(tarfile.open(arc).extractfile("manifest.json").read())
    layer = manifest[0]["Layers"][1]
    bad = tmp_path / "bad.tar"
    _rewrite_tar(arc, bad, {layer: make_tar({"etc/hostname": ("file", b"evil\n", 0o644)})})
    sink = DirectorySink(tmp_path / "s")
    with pytest.raises(OcirunError, match=r"^blob sha256:[a-f0-9]{64} does not match its digest$"):
        load_archive(bad, sink)
    assert not list((sink.root / "tmp").iterdir())


def test_docker_archive_config_not_matching_its_name(tmp_path: Path) -> None:
    arc = build_docker_archive(tmp_path / "save.tar", [(_specs()[0], ["app:1"])])
    manifest = json.loads(tarfile.open(arc).extractfile("manifest.json").read())
    bad = tmp_path / "bad.tar"
    _rewrite_tar(arc, bad, {manifest[0]["Config"]: b'{"architecture":"amd64","os":"linux","rootfs":{"diff_ids":[]}}'})
    with pytest.raises(OcirunError, match=r"does not match its digest"):
        load_archive(bad, DirectorySink(tmp_path / "s"))


def test_archive_paths_outside_are_refused(tmp_path: Path) -> None:
    arc = build_docker_archive(tmp_path / "save.tar", [(_specs()[0], ["app:1"])])
    manifest = json.loads(tarfile.open(arc).extractfile("manifest.json").read())
    manifest[0]["Layers"][0] = "../../etc/passwd"
    bad = tmp_path / "bad.tar"
    _rewrite_tar(arc, bad, {"manifest.json": json.dumps(manifest).encode()})
    with pytest.raises(OcirunError, match="outside"):
        load_archive(bad, DirectorySink(tmp_path / "s"))


def test_not_an_archive(tmp_path: Path) -> None:
    with pytest.raises(OcirunError, match="does not exist"):
        load_archive(tmp_path / "nope.tar", DirectorySink(tmp_path / "s"))
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"not a tar at all" * 100)
    with pytest.raises(OcirunError, match="cannot read archive"):
        load_archive(junk, DirectorySink(tmp_path / "s"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(OcirunError, match="neither a docker save archive nor an OCI image layout"):
        load_archive(empty, DirectorySink(tmp_path / "s"))
