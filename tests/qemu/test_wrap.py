"""The exec rewrite itself: argv/env shapes for static and dynamic QEMU and for host programs."""

from __future__ import annotations

import os

import pytest

from ocirun.engine.plan import EnginePlan
from ocirun.engine.qemu import arch as A
from ocirun.engine.qemu.locate import describe
from ocirun.engine.qemu.wrap import (
    HOST_ROOTFS,
    QemuSetup,
    add_host_rootfs,
    host_library_dirs,
    qemu_target,
    split_guest_env,
)

STATIC = "/usr/bin/qemu-aarch64-static"
DYNAMIC = "/usr/bin/qemu-aarch64"  # Debian's qemu-user (scripts/deps/apt.txt)


def _setup(cmd: list[str]) -> QemuSetup:
    return QemuSetup.from_plan(EnginePlan(argv=["/bin/sh"], qemu=cmd))


def test_foreign_program_runs_through_static_qemu_with_its_arguments(busybox_arm64_binary):
    setup = _setup([STATIC, "-g", "1234"])
    ident = A.read_elf_id(str(busybox_arm64_binary))
    rw = setup.rewrite("/bin/ls", ["ls", "-l", "/"], ["PATH=/bin", "LD_PRELOAD=/x.so"], ident, str(busybox_arm64_binary))
    assert rw.host_file == STATIC and rw.emulated.qemu == "aarch64" and rw.exe == "/bin/ls"
    assert rw.argv == [HOST_ROOTFS + STATIC, "-g", "1234", "-L", "/", "-0", "ls", "-E", "LD_PRELOAD=/x.so",
                       "/bin/ls", "-l", "/"]
    assert rw.env == ["PATH=/bin"]
    # a prefix the user asked for is kept (and then QEMU looks there first, as it would anyway)
    rw = setup.rewrite("/bin/ls", ["ls"], ["QEMU_LD_PREFIX=/x"], ident, str(busybox_arm64_binary))
    assert "-L" not in rw.argv
    rw = _setup([STATIC, "-L", "/opt"]).rewrite("/bin/ls", ["ls"], None, ident, str(busybox_arm64_binary))
    assert rw.argv[1:3] == ["-L", "/opt"] and rw.argv.count("-L") == 1


def test_dynamic_qemu_starts_through_the_host_loader_with_host_libraries(busybox_arm64_binary):
    if not os.path.exists(DYNAMIC):
        pytest.fail(f"{DYNAMIC} missing: install qemu-user (scripts/deps/apt.txt)", pytrace=False)
    setup = _setup([DYNAMIC])
    assert not setup.command.static
    rw = setup.rewrite("/bin/ls", ["ls"], None, A.read_elf_id(str(busybox_arm64_binary)), str(busybox_arm64_binary))
    assert rw.host_file == setup.command.interp and os.path.isfile(rw.host_file)
    assert rw.argv[0] == HOST_ROOTFS + setup.command.interp
    assert rw.argv[1] == "--library-path" and all(p.startswith(HOST_ROOTFS + "/") for p in rw.argv[2].split(":"))
    assert rw.argv[3:6] == ["--argv0", HOST_ROOTFS + DYNAMIC, HOST_ROOTFS + DYNAMIC]
    assert rw.argv[6:] == ["-L", "/", "-0", "ls", "/bin/ls"] and rw.env is None


def test_host_programs_run_natively_with_the_host_loader():
    setup = _setup([STATIC])
    rw = setup.rewrite("/usr/bin/make", ["make", "-v"], ["LD_LIBRARY_PATH=/guest"], A.read_elf_id("/bin/ls"), "/bin/ls")
    assert rw.emulated is None and rw.env is None  # the environment goes on to its children unchanged
    assert rw.host_file == "/lib64/ld-linux-x86-64.so.2" or rw.host_file.startswith("/lib")
    assert rw.argv[-4:] == ["--argv0", "make", "/usr/bin/make", "-v"]
    static_host = "/bin/busybox"  # Debian's busybox-static, the host's own
    assert setup.rewrite("/bin/busybox", ["sh"], None, A.read_elf_id(static_host), static_host) is None


def test_non_elf_and_unknown_machines_go_to_the_q_command(tmp_path):
    """As in PRoot: whatever the host does not run natively is the -q command's business."""
    setup = _setup([STATIC])
    rw = setup.rewrite("/x", ["x", "a"], None, None, "/etc/passwd")
    assert rw.argv == [HOST_ROOTFS + STATIC, "-L", "/", "-0", "x", "/x", "a"] and rw.emulated is None
    unknown = A.ElfId(A.ELFCLASS64, A.ELFDATA2LSB, 0x1234)
    assert setup.rewrite("/x", ["x"], None, unknown, "/etc/passwd").host_file == STATIC


def test_armhf_program_under_an_aarch64_qemu_gets_qemu_arm(busybox_armhf_binary):
    setup = _setup([STATIC])
    rw = setup.rewrite("/bin/sh", ["sh"], None, A.read_elf_id(str(busybox_armhf_binary)), str(busybox_armhf_binary))
    assert os.path.basename(rw.host_file) == "qemu-arm-static" and rw.emulated.qemu == "arm"


def test_qemu_target_from_name():
    assert qemu_target(describe([STATIC])).qemu == "aarch64"
    assert qemu_target(describe(["/usr/bin/qemu-arm-static"])).qemu == "arm"
    assert qemu_target(describe(["/bin/true"])) is None


def test_env_split_keeps_commas_and_qemu_variables():
    env, flags = split_guest_env(["A=1", "LD_LIBRARY_PATH=/a:/b", "LD_X=a,b", "QEMU_CPU=max"])
    assert flags == ["-E", "LD_LIBRARY_PATH=/a:/b"] and env == ["A=1", "LD_X=a,b", "QEMU_CPU=max"]
    assert split_guest_env(["A=1"]) == (None, []) and split_guest_env(None) == (None, [])


def test_host_rootfs_binding_added_once():
    plan = add_host_rootfs(EnginePlan(argv=["/bin/sh"], qemu=[STATIC]))
    add_host_rootfs(plan)
    assert [(b.host, b.guest) for b in plan.bindings] == [("/", HOST_ROOTFS)]
    assert add_host_rootfs(EnginePlan(argv=["/bin/sh"])).bindings == []


def test_host_library_dirs_hold_the_host_libc():
    assert any(os.path.exists(os.path.join(d, "libc.so.6")) for d in host_library_dirs())
