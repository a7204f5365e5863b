"""binfmt_misc guard: the kernel must not run foreign programs by itself, or QEMU tests prove nothing."""

from __future__ import annotations

import pytest

from ocirun.engine.qemu import arch as A
from tests.qemu.binfmt import (
    elf_header_for,
    exec_succeeds_untraced,
    foreign_handler,
    handlers,
    is_mounted,
)

AARCH64 = A.arch_by_name("aarch64")
ARM = A.arch_by_name("arm")

# What the kernel shows for an entry registered by Debian's qemu-user-static (binfmt-support).
AARCH64_ENTRY = """enabled
interpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P
flags: PF
offset 0
magic 7f454c460201010000000000000000000200b700
mask ffffffffffffff00fffffffffffffffffeffffff
"""


def test_this_machine_would_not_run_foreign_programs_without_ocirun(busybox_arm64_binary, busybox_armhf_binary):
    """Fail loudly: with a binfmt handler, every foreign-arch test here would pass without QEMU -q."""
    for arch in (AARCH64, ARM):
        handler = foreign_handler(arch)
        assert handler is None, (
            f"binfmt_misc handler {handler.name} ({handler.interpreter}) runs {arch.qemu} programs "
            f"by itself: unregister it, or the QEMU tests prove nothing"
        )
    for binary in (busybox_arm64_binary, busybox_armhf_binary):
        assert not exec_succeeds_untraced(str(binary)), (
            f"the kernel ran {binary} without ocirun: binfmt_misc (or a capable CPU) is active"
        )


def test_handler_detection_on_a_registered_looking_tree(tmp_path):
    """The reader understands the kernel's entry format (a copy of it in a tmp dir: never registered)."""
    (tmp_path / "status").write_text("enabled\n")
    (tmp_path / "register").write_text("")
    (tmp_path / "qemu-aarch64").write_text(AARCH64_ENTRY)
    (tmp_path / "python3.11").write_text("enabled\ninterpreter /usr/bin/python3.11\nflags: \nextension .pyc\n")
    assert is_mounted(str(tmp_path))
    assert [h.name for h in handlers(str(tmp_path))] == ["qemu-aarch64"]
    found = foreign_handler(AARCH64, str(tmp_path))
    assert found and found.interpreter.endswith("aarch64-binfmt-P")
    assert foreign_handler(ARM, str(tmp_path)) is None
    (tmp_path / "qemu-aarch64").write_text(AARCH64_ENTRY.replace("enabled", "disabled"))
    assert foreign_handler(AARCH64, str(tmp_path)) is None
    (tmp_path / "qemu-aarch64").write_text(AARCH64_ENTRY)
    (tmp_path / "status").write_text("disabled\n")
    assert foreign_handler(AARCH64, str(tmp_path)) is None


def test_not_mounted_means_no_handlers(tmp_path):
    assert not is_mounted(str(tmp_path))
    assert handlers(str(tmp_path)) == [] and foreign_handler(AARCH64, str(tmp_path)) is None


@pytest.mark.parametrize("e_type", [2, 3])
def test_headers_of_both_exec_and_pie_programs_match(e_type, tmp_path):
    (tmp_path / "status").write_text("enabled\n")
    (tmp_path / "qemu-aarch64").write_text(AARCH64_ENTRY)
    head = elf_header_for(AARCH64, e_type)
    assert head[18:20] == b"\xb7\x00" and foreign_handler(AARCH64, str(tmp_path))
