"""The architecture table against real files: Debian's binfmt magics, real ELF programs, real QEMU."""

from __future__ import annotations

import codecs
import glob
import os

import pytest

from ocirun.engine.qemu import arch as A
from ocirun.engine.qemu import qemu_for_platform
from ocirun.engine.qemu.elfinfo import interp_of
from ocirun.errors import OcirunError
from tests.qemu.binfmt import BinfmtHandler, _matches, elf_header_for

BINFMTS = "/usr/share/binfmts"  # shipped by qemu-user-static: one magic/mask per target


def _debian_binfmt(path: str) -> BinfmtHandler:
    fields = {}
    with open(path) as f:
        for line in f:
            key, _, value = line.strip().partition(" ")
            fields[key] = value

    def unescape(text: str) -> bytes:
        return codecs.escape_decode(text.encode())[0]

    return BinfmtHandler(os.path.basename(path), True, fields["interpreter"], int(fields.get("offset", 0)),
                         unescape(fields["magic"]), unescape(fields["mask"]))


def test_every_row_matches_exactly_its_own_debian_binfmt_entry():
    """Each table row's ELF header is claimed by qemu-<row.qemu>'s binfmt magic and by no other."""
    entries = {os.path.basename(p)[5:]: _debian_binfmt(p) for p in glob.glob(f"{BINFMTS}/qemu-*")}
    assert len(entries) > 20, "qemu-user-static's binfmt descriptions are missing"
    checked = 0
    for row in A.ARCHES:
        if row.qemu == "x86_64":
            continue  # Debian registers no handler for the x86_64 host itself
        head = elf_header_for(row)
        claimed = {name for name, h in entries.items() if _matches(h, head)}
        if row.qemu == "i386":
            assert claimed <= {"i386"}
            continue
        assert claimed == ({row.qemu} if row.qemu in entries else set()), (row.qemu, claimed)
        checked += 1
    assert checked >= 15


@pytest.mark.parametrize(
    "platform,qemu",
    [
        ("arm64", "aarch64"), ("linux/arm64/v8", "aarch64"), ("arm/v7", "arm"), ("arm/v6", "arm"),
        ("linux/arm", "arm"), ("ppc64le", "ppc64le"), ("s390x", "s390x"), ("riscv64", "riscv64"),
        ("386", "i386"), ("amd64", "x86_64"), ("mips64le", "mips64el"), ("loong64", "loongarch64"),
        ({"os": "linux", "architecture": "arm", "variant": "v7"}, "arm"), ("aarch64", "aarch64"),
        ("x86_64", "x86_64"), ("armhf", "arm"),
    ],
)
def test_platform_to_qemu_target(platform, qemu):
    assert A.arch_for_platform(platform).qemu == qemu


def test_unknown_platforms():
    assert A.arch_for_platform("arm64/v7") is None
    assert A.arch_for_platform("vax") is None
    with pytest.raises(OcirunError) as exc:
        qemu_for_platform("vax")
    assert exc.value.exit_code == 125


def test_real_elf_files_are_classified(busybox_arm64_binary, busybox_armhf_binary):
    busybox_arm64, busybox_armhf = str(busybox_arm64_binary), str(busybox_armhf_binary)
    assert A.arch_for_elf(A.read_elf_id(busybox_arm64)).oci == "arm64"
    assert A.arch_for_elf(A.read_elf_id(busybox_armhf)).platform == "linux/arm/v7"
    assert A.arch_for_elf(A.read_elf_id("/bin/ls")) == A.host_arch()
    assert interp_of(busybox_arm64) is None  # static
    assert interp_of("/bin/ls") and interp_of("/bin/ls").startswith("/lib")
    assert A.read_elf_id("/etc/passwd") is None


def test_every_qemu_static_binary_on_this_host_is_a_known_target():
    """Each /usr/bin/qemu-X-static has a row named X or is a target ocirun does not claim."""
    names = {os.path.basename(p)[5:-7] for p in glob.glob("/usr/bin/qemu-*-static")}
    assert {"aarch64", "arm", "ppc64le", "s390x", "riscv64", "i386", "x86_64"} <= names
    for row in A.ARCHES:
        if row.qemu != A.host_arch().qemu:
            assert row.qemu in names, f"table row {row.qemu} has no qemu-{row.qemu}-static"


def test_host_is_this_interpreters_architecture():
    host = A.host_arch()
    assert host.uname == os.uname().machine or os.uname().machine in host.aliases
    assert A.runs_natively(host)
    assert qemu_for_platform(host.platform) is None


def test_amd64_guest_on_arm64_host_uses_the_same_tables():
    arm64 = A.arch_by_name("arm64")
    cmd = qemu_for_platform("linux/amd64", host=arm64)
    assert cmd and os.path.basename(cmd[0]) in ("qemu-x86_64-static", "qemu-x86_64")
    assert qemu_for_platform("arm64", host=arm64) is None


def test_i386_runs_natively_on_x86_64():
    """The kernel runs 386 programs and the engine traces their ABI: no QEMU (arch.NATIVE_ON)."""
    host = A.host_arch()
    if host.qemu != "x86_64":
        pytest.skip("x86_64 host only")
    assert qemu_for_platform("386") is None and qemu_for_platform("linux/386") is None
    assert qemu_for_platform("arm64") is not None
