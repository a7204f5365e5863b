"""Pulls from a real docker-registry (distribution 2.8) on loopback, anonymous."""

from __future__ import annotations

import hashlib
import io
import json
import re
from pathlib import Path

import pytest

from ocirun.errors import OcirunError
from registry.platform import Platform
from registry.progress import Progress
from registry.pull import pull_image
from registry.types import BlobSink, PulledImage
from tests.registry.conftest import Pushed
from tests.registry.dirsink import DirectorySink
from tests.registry.regserver import free_port


def _assert_stored(img: PulledImage, sink: DirectorySink) -> None:
    """Every blob the image names is in the sink and hashes to its name."""
    for d in [img.manifest_digest, img.config_digest, *(layer.digest for layer in img.layers)]:
        data = sink.path(d).read_bytes()
        assert "sha256:" + hashlib.sha256(data).hexdigest() == d
    assert sink.path(img.manifest_digest).read_bytes() == img.manifest
    assert json.loads(img.config) == img.config_json
    assert not list((sink.root / "tmp").iterdir()), "no partial files left"


def test_directory_sink_is_a_blob_sink(tmp_path: Path) -> None:
    assert isinstance(DirectorySink(tmp_path), BlobSink)


@pytest.mark.parametrize("plat", ["linux/amd64", "arm64", "aarch64", "linux/arm64/v8", None])
def test_pull_multi_platform(anon_registry: Pushed, tmp_path: Path, plat: str | None) -> None:
    sink = DirectorySink(tmp_path / "store")
    want = Platform.parse(plat) if plat else None
    img = pull_image(anon_registry.ref("library/busybox:multi"), want, sink, progress=False)
    expect = "linux/arm64/v8" if plat and "64" in plat and "amd" not in plat else "linux/amd64"
    assert str(img.platform) == expect
    assert img.name == f"{anon_registry.reg.host}/library/busybox"
    assert img.tag == "multi"
    assert img.repo_digest != img.manifest_digest  # index digest vs platform manifest
    assert sink.has(img.repo_digest)  # the index is stored too
    assert img.manifest_media_type == "application/vnd.oci.image.manifest.v1+json"
    assert len(img.layers) == 2 and img.layers[0].size > 900_000
    assert img.config_json["architecture"] == expect.split("/")[1]
    assert len(img.diff_ids()) == 2
    _assert_stored(img, sink)


def test_pull_docker_media_types(anon_registry: Pushed, tmp_path: Path) -> None:
    sink = DirectorySink(tmp_path)
    img = pull_image(anon_registry.ref("library/busybox:docker"), Platform.parse("arm64"), sink, progress=False)
    assert img.manifest_media_type == "application/vnd.docker.distribution.manifest.v2+json"
    assert img.layers[0].media_type == "application/vnd.docker.image.rootfs.diff.tar.gzip"
    assert str(img.platform) == "linux/arm64/v8"
    _assert_stored(img, sink)


def test_pull_by_digest_and_tag_plus_digest(anon_registry: Pushed, tmp_path: Path) -> None:
    sink = DirectorySink(tmp_path)
    first = pull_image(anon_registry.ref("library/busybox:multi"), None, sink, progress=False)
    by_index = pull_image(anon_registry.ref(f"library/busybox@{first.repo_digest}"), None, sink, progress=False)
    assert by_index.tag is None and by_index.manifest_digest == first.manifest_digest
    by_manifest = pull_image(anon_registry.ref(f"library/busybox@{first.manifest_digest}"), None, sink, progress=False)
    assert by_manifest.repo_digest == first.manifest_digest
    both = pull_image(anon_registry.ref(f"library/busybox:whatever@{first.repo_digest}"), None, sink, progress=False)
    assert both.tag == "whatever" and both.manifest_digest == first.manifest_digest
    assert both.reference == f"{anon_registry.reg.host}/library/busybox:whatever"


def test_second_pull_downloads_no_layer(anon_registry: Pushed, tmp_path: Path) -> None:
    sink = DirectorySink(tmp_path)
    img = pull_image(anon_registry.ref("library/busybox:multi"), None, sink, progress=False)
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "blobs/sha256").iterdir()}
    for layer in img.layers:  # a re-download would have to go through a partial file
        sink.partial_path(layer.digest).mkdir()
    again = pull_image(anon_registry.ref("library/busybox:multi"), None, sink, progress=False)
    assert again.manifest_digest == img.manifest_digest
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "blobs/sha256").iterdir()} == before


def test_pull_into_the_image_store(anon_registry: Pushed, tmp_path: Path) -> None:
    """layers.blobs.BlobStore (the real store) works as the sink."""
    blobs = pytest.importorskip("layers.blobs")
    store = blobs.BlobStore(tmp_path / "store")
    img = pull_image(anon_registry.ref("public/busybox:multi"), Platform.parse("arm64"), store, progress=False)
    for layer in img.layers:
        assert store.has(layer.digest) and store.verify(layer.digest)
    assert store.has(img.config_digest) and store.has(img.manifest_digest)


def test_single_platform_image(anon_registry: Pushed, tmp_path: Path) -> None:
    sink = DirectorySink(tmp_path)
    img = pull_image(anon_registry.ref("library/busybox:single"), None, sink, progress=False)
    assert str(img.platform) == "linux/amd64" and img.repo_digest == img.manifest_digest
    with pytest.raises(OcirunError) as exc:
        pull_image(anon_registry.ref("library/busybox:single"), Platform.parse("arm64"), sink, progress=False)
    assert exc.value.message.endswith("available: linux/amd64")


def test_no_matching_platform_lists_available(anon_registry: Pushed, tmp_path: Path) -> None:
    with pytest.raises(OcirunError) as exc:
        pull_image(anon_registry.ref("library/busybox:multi"), Platform.parse("s390x"), DirectorySink(tmp_path), progress=False)
    assert "no image for platform linux/s390x" in exc.value.message
    assert exc.value.message.endswith("available: linux/amd64, linux/arm64/v8")


def test_unknown_tag_and_repository(anon_registry: Pushed, tmp_path: Path) -> None:
    sink = DirectorySink(tmp_path)
    with pytest.raises(OcirunError, match=r"^manifest for .*/library/busybox:nope not found: manifest unknown$"):
        pull_image(anon_registry.ref("library/busybox:nope"), None, sink, progress=False)
    with pytest.raises(OcirunError, match=r"^manifest for .*/no/such:1 not found"):
        pull_image(anon_registry.ref("no/such:1"), None, sink, progress=False)
    missing = "sha256:" + "0" * 64
    with pytest.raises(OcirunError, match="not found"):
        pull_image(anon_registry.ref(f"library/busybox@{missing}"), None, sink, progress=False)


def test_dead_registry(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    with pytest.raises(OcirunError) as exc:
        pull_image(f"127.0.0.1:{port}/library/busybox:1", None, DirectorySink(tmp_path), progress=False)
    assert exc.value.message == f"cannot reach registry 127.0.0.1:{port}: connection refused"


def test_default_registry_setting(anon_registry: Pushed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OCIRUN_DEFAULT_REGISTRY", anon_registry.reg.host)
    img = pull_image("busybox:multi", None, DirectorySink(tmp_path), progress=False)
    assert img.name == f"{anon_registry.reg.host}/library/busybox"


def test_mirror_serves_docker_hub_names(anon_registry: Pushed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """docker.io names come from the mirror (no internet here: docker.io itself is never reached)."""
    monkeypatch.setenv("OCIRUN_REGISTRY_MIRROR", f"127.0.0.1:{free_port()},{anon_registry.reg.host}")
    img = pull_image("busybox:multi", Platform.parse("arm64"), DirectorySink(tmp_path), progress=False)
    assert img.name == "docker.io/library/busybox" and str(img.platform) == "linux/arm64/v8"


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_on_a_terminal_only(anon_registry: Pushed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert Progress(None, io.StringIO()).enabled is False
    assert Progress(None, FakeTTY()).enabled is True
    tty = FakeTTY()
    monkeypatch.setattr("sys.stderr", tty)
    img = pull_image(anon_registry.ref("library/busybox:multi"), None, DirectorySink(tmp_path), progress=None)
    out = tty.getvalue()
    short = img.layers[0].digest.split(":")[1][:12]
    assert f"{short}: Pull complete" in out and "MB/s" in out
    assert re.search(r"/ 1\.\d\dMB ", out), out  # docker's units.HumanSize, as `images` prints
    plain = io.StringIO()
    monkeypatch.setattr("sys.stderr", plain)
    pull_image(anon_registry.ref("library/busybox:multi"), Platform.parse("arm64"), DirectorySink(tmp_path / "2"), progress=None)
    assert plain.getvalue() == ""


def test_progress_folds_finished_lines_on_a_small_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    import os as _os

    monkeypatch.setattr("shutil.get_terminal_size", lambda fallback=None: _os.terminal_size((80, 8)))
    tty = FakeTTY()
    board = Progress(True, tty)
    digests = [f"sha256:{i:064x}" for i in range(20)]
    for d in digests:
        board.add(d, 1000)
    for d in digests[:15]:
        board.start(d)
        board.advance(d, 1000)
        board.finish(d)
    last = tty.getvalue().rsplit("\x1b[J", 1)[1].splitlines()
    assert last[0] == "15 of 20 layers done" and len(last) <= 6
