"""A real Dockerfile on Debian (apt-get from Debian's archive, useradd + chown, COPY, a
multi-stage C build), pushed to the loopback registry and checked with tools nobody
here wrote: skopeo for the config, umoci (as root) or GNU tar for owners and modes."""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from tests.helpers import is_root, run_ocirun

HERE = Path(__file__).parent / "data/app"
pytestmark = [pytest.mark.slow, pytest.mark.network, pytest.mark.timeout(1500)]  # the apt-get build: ~2-3 min


class Built:
    def __init__(self, root: Path, ref: str, out: str, registry_host: str):
        self.root, self.ref, self.out, self.host = root, ref, out, registry_host

    def oc(self, *args: str, timeout: float = 300):
        return run_ocirun("--root", str(self.root), *args, timeout=timeout)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, registry_images) -> Built:
    root = tmp_path_factory.mktemp("build-debian")
    ref = f"{registry_images.host}/built/app:1"
    cp = run_ocirun("--root", str(root), "build", "--build-arg", f"BASE={registry_images.debian}",
                    "-t", ref, str(HERE), timeout=900)
    assert cp.returncode == 0, cp.stdout[-3000:] + cp.stderr
    return Built(root, ref, cp.stdout, registry_images.host)


@pytest.fixture(scope="module")
def pushed_layout(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Path:
    cp = built.oc("push", built.ref)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    layout = tmp_path_factory.mktemp("pulled-back") / "layout"
    subprocess.run(["skopeo", "--insecure-policy", "copy", "--src-tls-verify=false",
                    f"docker://{built.ref}", f"oci:{layout}:app"], check=True, capture_output=True)
    return layout


def test_the_image_runs(built: Built):
    assert "Successfully tagged" in built.out and "Setting up hello" in built.out
    assert built.oc("run", "--rm", built.ref).stdout == "hi from a multi-stage build\n"
    cp = built.oc("run", "--rm", built.ref, "sh", "-c", "hello; id -u; cat note; touch mine && echo ok")
    assert cp.stdout == "Hello, world!\n1500\nwritten by app\nok\n", cp.stderr


def test_cached_rebuild_is_quick(built: Built, registry_images):
    start = time.monotonic()
    cp = built.oc("build", "--build-arg", f"BASE={registry_images.debian}", "-t", built.ref, str(HERE))
    took = time.monotonic() - start
    assert cp.returncode == 0 and cp.stdout.count("CACHED") == 12, cp.stdout
    assert took < 5, f"cached rebuild took {took:.1f}s"


def test_skopeo_reads_the_pushed_config(built: Built, pushed_layout: Path):
    out = subprocess.run(["skopeo", "inspect", "--tls-verify=false", "--config", f"docker://{built.ref}"],
                         capture_output=True, text=True, check=True).stdout
    cfg = json.loads(out)
    assert cfg["config"]["User"] == "app" and cfg["config"]["WorkingDir"] == "/srv/data"
    assert cfg["config"]["Cmd"] == ["/usr/local/bin/hi"]
    assert "DEBIAN_FRONTEND=noninteractive" in cfg["config"]["Env"]
    assert cfg["config"]["Labels"]["org.opencontainers.image.title"] == "built by ocirun"
    assert any("apt-get install" in h.get("created_by", "") for h in cfg["history"])


def _layer_members(layout: Path) -> list[tarfile.TarInfo]:
    index = json.loads((layout / "index.json").read_text())
    man = json.loads((layout / "blobs/sha256" / index["manifests"][0]["digest"][7:]).read_bytes())
    out = []
    for d in man["layers"][1:]:  # the base image's layer is not ours
        with tarfile.open(layout / "blobs/sha256" / d["digest"][7:]) as tf:
            out += tf.getmembers()
    return out


def test_layers_carry_the_guests_owners(pushed_layout: Path):
    members = {m.name.rstrip("/"): m for m in _layer_members(pushed_layout)}
    assert (members["srv/data"].uid, members["srv/data"].gid, members["srv/data"].mode) == (1500, 1500, 0o750)
    assert (members["srv/data/one.txt"].uid, members["srv/data/note"].uid) == (1500, 1500)
    assert (members["usr/bin/hello"].uid, members["usr/bin/hello"].gid) == (0, 0)
    assert members["home/app"].uid == 1500
    if not is_root():
        mine = [n for n, m in members.items() if m.uid == os.getuid() or m.gid == os.getgid()]
        assert mine == [], f"the builder's own uid leaked into the layers: {mine[:10]}"


@pytest.mark.skipif(not is_root(), reason="umoci unpack keeps owners only as root")
def test_umoci_unpacks_owners_and_modes(pushed_layout: Path, tmp_path: Path):
    bundle = tmp_path / "bundle"
    subprocess.run(["umoci", "unpack", "--image", f"{pushed_layout}:app", str(bundle)], check=True,
                   capture_output=True)
    rootfs = bundle / "rootfs"
    st = os.lstat(rootfs / "srv/data")
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (1500, 1500, 0o750)
    assert os.lstat(rootfs / "srv/data/note").st_uid == 1500
    assert os.lstat(rootfs / "usr/bin/hello").st_uid == 0
    assert (rootfs / "usr/local/bin/hi").stat().st_mode & 0o111
    assert "app:x:1500:1500" in (rootfs / "etc/passwd").read_text()
