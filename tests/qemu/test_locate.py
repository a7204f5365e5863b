"""Finding QEMU: override variable, PATH order, and the one-line error with exit 125."""

from __future__ import annotations

import os

import pytest

from ocirun.engine.qemu import arch as A
from ocirun.engine.qemu import qemu_for_platform
from ocirun.engine.qemu.locate import env_var, find_qemu
from ocirun.errors import OcirunError

AARCH64 = A.arch_by_name("aarch64")


def _link_dir(tmp_path, *names):
    d = tmp_path / "bin"
    d.mkdir(exist_ok=True)
    for name in names:
        os.symlink("/usr/bin/qemu-aarch64-static", d / name)
    return str(d)


def test_static_preferred_then_plain_name(tmp_path):
    d = _link_dir(tmp_path, "qemu-aarch64-static", "qemu-aarch64")
    assert find_qemu(AARCH64, env={"PATH": d}).path == f"{d}/qemu-aarch64-static"
    os.unlink(f"{d}/qemu-aarch64-static")
    found = find_qemu(AARCH64, env={"PATH": d})
    assert found.path == f"{d}/qemu-aarch64" and found.static


def test_env_override_is_a_whole_command(tmp_path):
    d = _link_dir(tmp_path, "my-qemu")
    env = {"PATH": "/nonexistent", env_var(AARCH64): f"{d}/my-qemu -cpu max"}
    assert env_var(AARCH64) == "OCIRUN_QEMU_AARCH64"
    assert qemu_for_platform("arm64", env=env) == [f"{d}/my-qemu", "-cpu", "max"]
    config = {"aarch64": f"{d}/my-qemu -g 1234"}
    assert qemu_for_platform("arm64", env={"PATH": "/x"}, overrides=config)[1:] == ["-g", "1234"]


def test_broken_override_is_an_error_not_a_fallback():
    with pytest.raises(OcirunError) as exc:
        find_qemu(AARCH64, env={"PATH": "/usr/bin", "OCIRUN_QEMU_AARCH64": "/nope/qemu"})
    assert exc.value.exit_code == 125 and "OCIRUN_QEMU_AARCH64" in exc.value.message


def test_missing_qemu_names_the_package():
    with pytest.raises(OcirunError) as exc:
        qemu_for_platform("linux/arm/v7", env={"PATH": "/nonexistent"})
    msg = exc.value.message
    assert exc.value.exit_code == 125 and "\n" not in msg
    assert "qemu-user-static" in msg and "linux/arm/v7" in msg and "OCIRUN_QEMU_ARM" in msg


def test_dynamic_qemu_build_is_recognised(tmp_path):
    """A dynamically linked QEMU (Debian's qemu-user) carries its PT_INTERP: it needs the host loader."""
    fake = tmp_path / "qemu-aarch64"
    fake.write_bytes(open("/bin/true", "rb").read())  # a real dynamic host ELF stands in
    fake.chmod(0o755)
    found = find_qemu(AARCH64, env={"PATH": str(tmp_path)})
    assert not found.static and found.interp.startswith("/lib")

