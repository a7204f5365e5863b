"""A 386 image on an x86_64 host runs natively (traced i386 ABI), not through QEMU."""

from __future__ import annotations

import platform
from pathlib import Path

import pytest

from tests.helpers import run_ocirun

pytestmark = pytest.mark.skipif(platform.machine() != "x86_64", reason="386 runs natively on x86_64 only")


def _ok(cp) -> str:
    assert cp.returncode == 0, f"exit {cp.returncode}\nstdout: {cp.stdout!r}\nstderr: {cp.stderr!r}"
    return cp.stdout


def test_386_image_runs_without_qemu(tmp_path: Path, busybox_i386_binary: Path) -> None:
    """`ocirun load` of an OCI layout of Debian's busybox-static:i386, `ocirun run --platform 386`:
    the container's shell and its children are 32-bit programs the engine traces; a QEMU
    that cannot run (OCIRUN_QEMU_I386=false) proves none is used."""
    from tests.registry.regserver import ImageSpec, build_layout, busybox_layer

    layer = busybox_layer(busybox_i386_binary)
    layer["tmp/"] = ("dir",)
    for applet in ("mkdir", "id", "tr", "readlink"):
        layer[f"bin/{applet}"] = ("symlink", "busybox")
    layout = build_layout(tmp_path / "layout", [ImageSpec("linux/386", [layer])], tag="i386")
    store = tmp_path / "store"
    loaded = _ok(run_ocirun("--root", store, "load", "-i", layout))
    image = next(line.split(": ", 1)[1].strip() for line in loaded.splitlines() if line.startswith("Loaded image"))
    env = {"OCIRUN_QEMU_I386": "false"}
    script = "uname -m; id -u; mkdir -p /tmp/d && echo made > /tmp/d/f && cat /tmp/d/f | tr a-z A-Z; readlink /bin/sh"
    out = _ok(run_ocirun("--root", store, "run", "--rm", "--platform", "386", image, "sh", "-c", script, env=env))
    assert out.splitlines() == ["i686", "0", "MADE", "busybox"]
    out = _ok(run_ocirun("--root", store, "run", "--rm", image, "cat", "/etc/passwd", env=env))
    assert out == "root:x:0:0:root:/root:/bin/sh\n"
