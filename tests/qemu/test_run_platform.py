"""`ocirun run --platform arm64 ...`: the runner picks QEMU by itself from the image's platform."""

from __future__ import annotations

import pytest

from tests.helpers import assert_one_line_error, run_ocirun
from tests.qemu.binfmt import exec_succeeds_untraced


@pytest.fixture(scope="module")
def store(tmp_path_factory, registry_images, busybox_arm64_binary):
    assert not exec_succeeds_untraced(str(busybox_arm64_binary)), "binfmt_misc runs arm64 programs: tests prove nothing"
    if "linux/arm64" not in " ".join(registry_images.debian_platforms):
        pytest.fail("test/debian:12 has no arm64 image: the debian-bookworm-arm64 fixture is missing", pytrace=False)
    root = tmp_path_factory.mktemp("qemu-store")
    for ref in (registry_images.busybox, registry_images.debian):
        cp = run_ocirun("--root", root, "pull", "--platform", "arm64", ref, timeout=600)
        assert cp.returncode == 0, cp.stderr
    return root, registry_images


def ok(cp) -> str:
    assert cp.returncode == 0, f"exit {cp.returncode}\nstdout: {cp.stdout!r}\nstderr: {cp.stderr!r}"
    return cp.stdout


def test_arm64_busybox_image(store):
    root, images = store
    out = ok(run_ocirun("--root", root, "run", "--rm", "--platform", "arm64", images.busybox, "uname", "-m"))
    assert out == "aarch64\n"


def test_arm64_debian_image(store):
    root, images = store
    out = ok(run_ocirun("--root", root, "--platform", "linux/arm64", images.debian, "bash", "-c",
                        "uname -m; dpkg --print-architecture; readlink /proc/self/exe; id -u; "
                        "apt-get --version | head -1; ls /host-rootfs/usr/bin/qemu-aarch64-static",
                        timeout=300))
    lines = out.splitlines()
    assert lines[:4] == ["aarch64", "arm64", "/usr/bin/readlink", "0"]
    assert lines[4].startswith("apt ") and "(arm64)" in lines[4]
    assert lines[5] == "/host-rootfs/usr/bin/qemu-aarch64-static"


def test_missing_qemu_names_the_package_and_exits_125(store):
    root, images = store
    cp = run_ocirun("--root", root, "run", "--rm", "--platform", "arm64", images.busybox, "true",
                    env={"PATH": "/nonexistent"})
    line = assert_one_line_error(cp, 125)
    assert "qemu-user-static" in line and "arm64" in line


@pytest.mark.network
@pytest.mark.slow
@pytest.mark.timeout(1200)  # ~100 s here: every dpkg/apt step is emulated
def test_apt_get_install_hello_under_emulation(store):
    """End to end: fake root + network + QEMU, with Debian's archive."""
    root, images = store
    out = ok(run_ocirun("--root", root, "--platform", "arm64", images.debian, "bash", "-c",
                        "apt-get update -q >/dev/null && apt-get install -y -q hello >/dev/null && hello "
                        "&& dpkg -L hello | grep -c /usr/bin/hello && od -An -tx1 -j18 -N2 /usr/bin/hello",
                        timeout=1200))
    lines = out.splitlines()
    assert lines[:2] == ["Hello, world!", "1"]
    assert lines[-1].split() == ["b7", "00"]  # e_machine of the installed hello: EM_AARCH64


def test_cached_foreign_image_runs_without_platform_flag(store):
    """Only the arm64 image is in this store: running it by name alone picks QEMU from its platform."""
    root, images = store
    cp = run_ocirun("--root", root, "run", "--rm", "--pull", "never", images.busybox, "uname", "-m")
    assert ok(cp) == "aarch64\n"
