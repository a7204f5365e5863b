"""`ocirun build` for a foreign platform (RUN under QEMU), and a build killed mid-step."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from layers.store import Store
from tests.helpers import ocirun_argv, ocirun_env, run_ocirun


def _oc(store: Path, *args, **kw):
    return run_ocirun("--root", str(store), *args, timeout=kw.pop("timeout", 300), **kw)


def test_foreign_platform_runs_under_qemu(tmp_path: Path, busybox_arm64_binary: Path):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    shutil.copy(busybox_arm64_binary, ctx / "busybox")
    (ctx / "Dockerfile").write_text(
        "FROM scratch\n"
        "ARG TARGETARCH\n"
        "COPY busybox /bin/busybox\n"
        'RUN ["/bin/busybox", "sh", "-c", "/bin/busybox uname -m > /machine; echo $TARGETARCH > /arch"]\n'
        'CMD ["/bin/busybox", "cat", "/machine", "/arch"]\n'
    )
    cp = _oc(tmp_path / "store", "build", "--platform", "linux/arm64", "-t", "arm:1", str(ctx))
    assert cp.returncode == 0, cp.stdout + cp.stderr
    rec = Store.open(tmp_path / "store").resolve("arm:1")
    assert rec.platform == "linux/arm64/v8" and rec.config["architecture"] == "arm64"
    run = _oc(tmp_path / "store", "run", "--rm", "--platform", "linux/arm64", "arm:1")
    assert run.stdout == "aarch64\narm64\n", run.stderr


def test_a_killed_build_leaves_the_store_consistent(tmp_path: Path):
    store = tmp_path / "store"
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    shutil.copy("/bin/busybox", ctx / "busybox")
    (ctx / "Dockerfile").write_text(
        "FROM scratch\nCOPY busybox /bin/busybox\n"
        'RUN ["/bin/busybox", "sh", "-c", "/bin/busybox touch /started; /bin/busybox sleep 60"]\n'
    )
    proc = subprocess.Popen(ocirun_argv("--root", store, "build", "-t", "killed:1", ctx), env=ocirun_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list((store / "containers").glob("*/rootfs/started")):
        time.sleep(0.2)
    assert list((store / "containers").glob("*/rootfs/started")), "the RUN step never started"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    s = Store.open(store)
    assert s.resolve("killed:1") is None  # nothing half-built is tagged
    for image_id in s.image_ids():  # every image that looks complete is complete
        rec = s.get(image_id)
        assert rec is not None and rec.rootfs.is_dir() and all(s.blobs.verify(d) for d in rec.layers)
    # the next build removes the killed step's container and finishes
    (ctx / "Dockerfile").write_text((ctx / "Dockerfile").read_text().replace("sleep 60", "true"))
    cp = _oc(store, "build", "-t", "killed:1", str(ctx))
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert not [n for n in os.listdir(store / "containers") if not n.startswith(".")]
    assert _oc(store, "image", "prune", "-f").returncode == 0
    assert not [n for n in os.listdir(store / "tmp") if n != "partial"]
