"""Hostile and failing registries: bad bytes never enter the store; errors name the cause."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
import time
from pathlib import Path

import pytest

from ocirun.errors import OcirunError
from registry.pull import pull_image
from tests.registry.conftest import Pushed
from tests.registry.dirsink import DirectorySink
from tests.registry.fakereg import FakeRegistry
from tests.registry.regserver import ImageSpec, build_layout, push

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def _stored(sink: DirectorySink) -> set[str]:
    return {p.name for p in (sink.root / "blobs/sha256").iterdir()}


def _unique_image(tmp: Path, anon: Pushed, repo: str, size: int = 3_000_000) -> tuple[str, str, int]:
    """Push an image with a layer no other test shares; returns (ref, layer digest, size)."""
    payload = os.urandom(size)
    layout = build_layout(tmp / "layout", [ImageSpec("linux/amd64", [{"big.bin": payload}], compression="none")], tag="1")
    push(layout, anon.reg, f"{repo}:1", tag="1")
    index = json.loads((layout / "index.json").read_text())
    man = json.loads((layout / "blobs/sha256" / index["manifests"][0]["digest"].split(":")[1]).read_text())
    layer = man["layers"][0]
    return anon.ref(f"{repo}:1"), layer["digest"], layer["size"]


def test_corrupted_blob_in_registry_storage(anon_registry: Pushed, tmp_path: Path) -> None:
    ref, digest, size = _unique_image(tmp_path, anon_registry, "hostile/corrupt")
    data = anon_registry.reg.blob_data_path(digest)
    raw = bytearray(data.read_bytes())
    raw[size // 2] ^= 0xFF  # same size, one byte flipped
    data.write_bytes(bytes(raw))
    sink = DirectorySink(tmp_path / "store")
    with pytest.raises(OcirunError) as exc:
        pull_image(ref, None, sink, progress=False)
    assert exc.value.message == f"blob {digest} does not match its digest"
    assert digest.split(":")[1] not in _stored(sink)
    assert not sink.partial_path(digest).exists()


def test_truncated_blob_in_registry_storage(anon_registry: Pushed, tmp_path: Path) -> None:
    ref, digest, size = _unique_image(tmp_path, anon_registry, "hostile/truncated")
    data = anon_registry.reg.blob_data_path(digest)
    with open(data, "r+b") as f:
        f.truncate(size // 3)
    sink = DirectorySink(tmp_path / "store")
    with pytest.raises(OcirunError) as exc:
        pull_image(ref, None, sink, progress=False)
    assert exc.value.message.startswith(f"blob {digest} is truncated: got {size // 3} of {size} bytes")
    assert digest.split(":")[1] not in _stored(sink)


# ------------------------------------------------------------------ scripted registry


@pytest.fixture
def fake() -> FakeRegistry:
    f = FakeRegistry()
    yield f
    f.stop()


def _image(fake: FakeRegistry, layers: list[bytes], tag: str = "1", missing: bool = False) -> tuple[dict, list[dict]]:
    descs = []
    for data in layers:
        d = fake.add_blob(data)
        descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar", **d})
    if missing:
        del fake.blobs[descs[-1]["digest"]]
    cfg = fake.add_blob(json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [d["digest"] for d in descs]}}).encode())
    man = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **cfg}, "layers": descs}
    fake.add_manifest(man, OCI_MANIFEST, tag=tag)
    return man, descs


def test_manifest_naming_a_missing_blob(fake: FakeRegistry, tmp_path: Path) -> None:
    _, descs = _image(fake, [b"a" * 1000, b"b" * 1000], missing=True)
    with pytest.raises(OcirunError) as exc:
        pull_image(f"{fake.host}/x:1", None, DirectorySink(tmp_path), progress=False)
    assert exc.value.message == f"blob {descs[1]['digest']} not found in {fake.host}/x"


def test_500_then_200_and_429(fake: FakeRegistry, tmp_path: Path) -> None:
    _, descs = _image(fake, [os.urandom(100_000)])
    fake.fail_first = {"/manifests/1": [500, 503], f"/blobs/{descs[0]['digest']}": [(429, {"Retry-After": "0"}), 502]}
    img = pull_image(f"{fake.host}/x:1", None, DirectorySink(tmp_path), progress=False)
    assert img.layers[0].digest == descs[0]["digest"]
    assert [e.path.rsplit("/", 2)[-2] for e in fake.log].count("manifests") == 3


def test_500_forever_gives_up(fake: FakeRegistry, tmp_path: Path) -> None:
    _image(fake, [b"x"])
    fake.fail_first = {"/manifests/1": [500] * 50}
    with pytest.raises(OcirunError, match=rf"^registry {fake.host} answered HTTP 500 for manifest"):
        pull_image(f"{fake.host}/x:1", None, DirectorySink(tmp_path), progress=False)
    assert len([e for e in fake.log if "/manifests/" in e.path]) == 4  # OCIRUN_PULL_RETRIES=4: bounded


def test_resume_after_dropped_connection(fake: FakeRegistry, tmp_path: Path) -> None:
    _, descs = _image(fake, [os.urandom(5_000_000)])
    digest = descs[0]["digest"]
    fake.drop_after[digest] = 2_000_000
    sink = DirectorySink(tmp_path)
    pull_image(f"{fake.host}/x:1", None, sink, progress=False)
    ranges = [e.headers.get("Range") for e in fake.log if e.path.endswith(digest)]
    assert ranges[0] is None and ranges[1] is not None and ranges[1].startswith("bytes=") and ranges[1] != "bytes=0-"
    assert int(ranges[1][6:-1]) >= 2_000_000 - 65536  # resumed near the cut, not from 0
    assert hashlib.sha256(sink.path(digest).read_bytes()).hexdigest() == digest.split(":")[1]


def test_resume_partial_left_by_an_interrupted_pull(fake: FakeRegistry, tmp_path: Path) -> None:
    data = os.urandom(1_000_000)
    _, descs = _image(fake, [data])
    digest = descs[0]["digest"]
    sink = DirectorySink(tmp_path)
    sink.partial_path(digest).write_bytes(data[:300_000])
    pull_image(f"{fake.host}/x:1", None, sink, progress=False)
    assert [e.headers.get("Range") for e in fake.log if e.path.endswith(digest)] == ["bytes=300000-"]
    assert sink.path(digest).read_bytes() == data


def test_garbage_partial_is_discarded(fake: FakeRegistry, tmp_path: Path) -> None:
    """A partial whose bytes are wrong fails the whole-file hash: one clean retry, then success."""
    data = os.urandom(500_000)
    _, descs = _image(fake, [data])
    digest = descs[0]["digest"]
    sink = DirectorySink(tmp_path)
    sink.partial_path(digest).write_bytes(os.urandom(200_000))
    pull_image(f"{fake.host}/x:1", None, sink, progress=False)
    assert [e.headers.get("Range") for e in fake.log if e.path.endswith(digest)] == ["bytes=200000-", None]
    assert sink.path(digest).read_bytes() == data


def test_server_ignoring_range(fake: FakeRegistry, tmp_path: Path) -> None:
    data = os.urandom(400_000)
    _, descs = _image(fake, [data])
    fake.ignore_range = True
    sink = DirectorySink(tmp_path)
    sink.partial_path(descs[0]["digest"]).write_bytes(data[:100_000])
    pull_image(f"{fake.host}/x:1", None, sink, progress=False)
    assert sink.path(descs[0]["digest"]).read_bytes() == data


def test_redirect_to_storage_drops_authorization(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    storage = FakeRegistry()
    reg = FakeRegistry(basic_auth=("u", "p"), redirect_blobs_to=storage.url)
    try:
        _, descs = _image(reg, [os.urandom(10_000)])
        storage.blobs = reg.blobs
        auth_file = tmp_path / "auth.json"
        auth_file.write_text(json.dumps({"auths": {reg.host: {"auth": base64.b64encode(b"u:p").decode()}}}))
        monkeypatch.setenv("OCIRUN_AUTH_FILE", str(auth_file))
        img = pull_image(f"{reg.host}/x:1", None, DirectorySink(tmp_path / "s"), progress=False)
        assert img.layers[0].digest == descs[0]["digest"]
        assert storage.log, "blobs came through the redirect"
        assert all("Authorization" not in e.headers for e in storage.log)
        assert any(e.headers.get("Authorization", "").startswith("Basic ") for e in reg.log if "/blobs/" in e.path)
    finally:
        reg.stop()
        storage.stop()


def test_manifest_digest_checked_when_pulling_by_digest(fake: FakeRegistry, tmp_path: Path) -> None:
    man, _ = _image(fake, [b"layer"])
    real = fake.add_manifest(man, OCI_MANIFEST)
    other = json.dumps({**man, "annotations": {"evil": "yes"}}).encode()
    fake.manifests[real] = (other, OCI_MANIFEST)
    with pytest.raises(OcirunError) as exc:
        pull_image(f"{fake.host}/x@{real}", None, DirectorySink(tmp_path), progress=False)
    assert exc.value.message == f"manifest {real} does not match its digest (got sha256:{hashlib.sha256(other).hexdigest()})"


def test_config_blob_checked(fake: FakeRegistry, tmp_path: Path) -> None:
    man, _ = _image(fake, [b"layer"])
    cfg_digest = man["config"]["digest"]
    fake.blobs[cfg_digest] = b'{"architecture":"arm64","os":"linux"}'
    sink = DirectorySink(tmp_path)
    with pytest.raises(OcirunError, match=f"^blob {cfg_digest} does not match its digest$"):
        pull_image(f"{fake.host}/x:1", None, sink, progress=False)
    assert cfg_digest.split(":")[1] not in _stored(sink)


def test_schema1_refused(fake: FakeRegistry, tmp_path: Path) -> None:
    fake.add_manifest({"schemaVersion": 1, "name": "x", "tag": "1", "fsLayers": []}, "application/vnd.docker.distribution.manifest.v1+prettyjws", tag="1")
    with pytest.raises(OcirunError, match="Docker schema 1, which is not supported"):
        pull_image(f"{fake.host}/x:1", None, DirectorySink(tmp_path), progress=False)


def test_concurrent_pulls_of_one_image(anon_registry: Pushed, tmp_path: Path) -> None:
    """Several pulls into one store at once all succeed and store one copy."""
    sink = DirectorySink(tmp_path)
    errors: list[BaseException] = []

    def one() -> None:
        try:
            pull_image(anon_registry.ref("library/busybox:multi"), None, sink, progress=False)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert not list((tmp_path / "tmp").iterdir())
    for name in _stored(sink):
        assert hashlib.sha256((tmp_path / "blobs/sha256" / name).read_bytes()).hexdigest() == name


def test_first_failure_stops_other_downloads(fake: FakeRegistry, tmp_path: Path) -> None:
    """A missing layer ends the pull at once; a slow layer in flight stops, its partial kept for resume."""
    slow = os.urandom(4_000_000)
    _, descs = _image(fake, [slow, b"gone" * 100], missing=True)
    fake.throttle[descs[0]["digest"]] = 0.02  # ~1.2 s for the whole blob
    sink = DirectorySink(tmp_path)
    t = time.monotonic()
    with pytest.raises(OcirunError, match="not found"):
        pull_image(f"{fake.host}/x:1", None, sink, progress=False, max_workers=2)
    assert time.monotonic() - t < 0.9
    partial = sink.partial_path(descs[0]["digest"])
    assert 0 < partial.stat().st_size < len(slow)
    assert not sink.has(descs[0]["digest"])


@pytest.mark.parametrize(
    "layer, message",
    [
        ({"mediaType": "application/vnd.oci.image.layer.v1.tar", "size": 3}, "bad digest None"),
        ({"mediaType": "x", "size": 3, "digest": "sha256:../../../etc/passwd"}, "bad digest 'sha256:../../../etc/passwd'"),
        ({"mediaType": "x", "size": "3", "digest": "sha256:" + "a" * 64}, "malformed at layers/0/size"),
        ({"mediaType": "x", "size": -5, "digest": "sha256:" + "a" * 64}, "bad size -5"),
    ],
)
def test_malformed_manifests(fake: FakeRegistry, tmp_path: Path, layer: dict, message: str) -> None:
    cfg = fake.add_blob(b'{"architecture":"amd64","os":"linux"}')
    man = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **cfg}, "layers": [layer]}
    fake.add_manifest(man, OCI_MANIFEST, tag="1")
    with pytest.raises(OcirunError) as exc:
        pull_image(f"{fake.host}/x:1", None, DirectorySink(tmp_path), progress=False)
    assert message in exc.value.message and "\n" not in exc.value.message


def test_malformed_index(fake: FakeRegistry, tmp_path: Path) -> None:
    fake.add_manifest({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": {"not": "a list"}},
                      "application/vnd.oci.image.index.v1+json", tag="1")
    with pytest.raises(OcirunError, match="^index for .* is malformed at manifests"):
        pull_image(f"{fake.host}/x:1", None, DirectorySink(tmp_path), progress=False)


def test_layers_download_in_parallel(fake: FakeRegistry, tmp_path: Path) -> None:
    _, descs = _image(fake, [os.urandom(1_000_000), os.urandom(1_000_000)])
    for d in descs:
        fake.throttle[d["digest"]] = 0.02  # ~0.3 s each
    pull_image(f"{fake.host}/x:1", None, DirectorySink(tmp_path), progress=False, max_workers=2)
    assert fake.max_active == 2  # both layers were being sent at the same time


_PULL_SCRIPT = """
import sys
from tests.registry.dirsink import DirectorySink
from registry.pull import pull_image
img = pull_image(sys.argv[1], None, DirectorySink(sys.argv[2]), progress=False)
print(img.manifest_digest)
"""


def test_two_processes_pull_one_blob_once(fake: FakeRegistry, tmp_path: Path) -> None:
    """The per-blob file lock: the second process waits, then finds the blob stored."""
    import subprocess
    import sys

    _, descs = _image(fake, [os.urandom(2_000_000)])
    digest = descs[0]["digest"]
    fake.throttle[digest] = 0.01
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    procs = [
        subprocess.Popen([sys.executable, "-c", _PULL_SCRIPT, f"{fake.host}/x:1", str(tmp_path / "store")], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert outs[0][0] == outs[1][0]
    assert len([e for e in fake.log if e.path.endswith(digest)]) == 1


def test_artifact_is_not_an_image(fake: FakeRegistry, tmp_path: Path) -> None:
    cfg = fake.add_blob(b"{}")
    man = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": {"mediaType": "application/vnd.cncf.helm.config.v1+json", **cfg}, "layers": []}
    fake.add_manifest(man, OCI_MANIFEST, tag="1")
    with pytest.raises(OcirunError, match=r"x:1 is not a container image \(config type application/vnd.cncf.helm.config.v1\+json\)$"):
        pull_image(f"{fake.host}/x:1", None, DirectorySink(tmp_path), progress=False)


def test_connection_dropped_before_any_byte_is_retried(fake: FakeRegistry, tmp_path: Path) -> None:
    data = os.urandom(300_000)
    _, descs = _image(fake, [data])
    fake.drop_after[descs[0]["digest"]] = 0
    sink = DirectorySink(tmp_path)
    pull_image(f"{fake.host}/x:1", None, sink, progress=False)
    assert sink.path(descs[0]["digest"]).read_bytes() == data


def test_redirect_within_the_registry_keeps_authorization(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reg = FakeRegistry(basic_auth=("u", "p"))
    try:
        reg.redirect_blobs_to = reg.url  # /v2/x/blobs/D -> /storage/D on the same host
        _image(reg, [os.urandom(1000)])
        (tmp_path / "auth.json").write_text(json.dumps({"auths": {reg.host: {"auth": base64.b64encode(b"u:p").decode()}}}))
        monkeypatch.setenv("OCIRUN_AUTH_FILE", str(tmp_path / "auth.json"))
        pull_image(f"{reg.host}/x:1", None, DirectorySink(tmp_path / "s"), progress=False)
        storage = [e for e in reg.log if e.path.startswith("/storage/")]
        assert storage and all(e.headers.get("Authorization", "").startswith("Basic ") for e in storage)
    finally:
        reg.stop()


def test_pull_killed_halfway_resumes(fake: FakeRegistry, tmp_path: Path) -> None:
    """SIGKILL during a download leaves a partial (never a blob); the next pull resumes it."""
    import signal
    import subprocess
    import sys

    data = os.urandom(3_000_000)
    _, descs = _image(fake, [data])
    digest = descs[0]["digest"]
    fake.throttle[digest] = 0.02  # ~1 s for the blob
    sink = DirectorySink(tmp_path / "store")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen([sys.executable, "-c", _PULL_SCRIPT, f"{fake.host}/x:1", str(tmp_path / "store")], env=env)
    partial = sink.partial_path(digest)
    deadline = time.monotonic() + 30
    while not (partial.exists() and partial.stat().st_size > 500_000):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not sink.has(digest)
    fake.throttle.clear()
    pull_image(f"{fake.host}/x:1", None, sink, progress=False)
    ranges = [e.headers.get("Range") for e in fake.log if e.path.endswith(digest)]
    assert ranges[0] is None and ranges[-1] is not None and int(ranges[-1][6:-1]) > 500_000
    assert sink.path(digest).read_bytes() == data
