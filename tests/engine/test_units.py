"""Pure parts of the engine: the syscall table, the BPF filter, shebang and ELF parsing."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from ocirun.engine import seccomp, syscalls
from ocirun.engine.arch import ARCHES
from ocirun.engine.execve import EM_X86_64, loader_supports_argv0, parse_shebang, read_elf

PATH_SYSCALLS = """open creat openat openat2 stat lstat newfstatat statx statfs access faccessat faccessat2
readlink readlinkat getcwd chdir fchdir chroot execve execveat uselib acct truncate chmod fchmodat
fchmodat2 chown lchown fchownat utime utimes futimesat utimensat setxattr lsetxattr getxattr lgetxattr
listxattr llistxattr removexattr lremovexattr mkdir mkdirat rmdir unlink unlinkat rename renameat
renameat2 link linkat symlink symlinkat mknod mknodat mount umount2 swapon swapoff inotify_add_watch
fanotify_mark name_to_handle_at bind connect sendto sendmsg getsockname getpeername accept accept4""".split()


def test_table_covers_the_path_syscalls() -> None:
    table = syscalls.load("x86_64")
    by_name = {s.name: s for s in table.values()}
    missing = [n for n in PATH_SYSCALLS if n not in by_name]
    assert not missing
    numbers = syscalls.names("x86_64")
    for spec in table.values():
        assert numbers[spec.name] == spec.nr
        for pa in spec.paths:
            assert 0 <= pa.arg < 6 and (pa.dirfd is None or 0 <= pa.dirfd < 6)
        for i in spec.invalidate:
            assert 0 <= i < len(spec.paths)
    # spot checks against the kernel ABI
    assert by_name["newfstatat"].nr == 262 and by_name["openat2"].nr == 437 and by_name["execve"].nr == 59
    assert by_name["lstat"].paths[0].follow == syscalls.NOFOLLOW
    assert by_name["symlinkat"].paths[0].arg == 2  # the target (arg 0) is not a path to translate
    assert by_name["linkat"].paths[0].follow == syscalls.FLAG_FOLLOW


def _run_bpf(prog: bytes, nr: int, arch: int, args: tuple[int, ...] = ()) -> int:
    """A tiny classic-BPF interpreter for the instructions the filter uses."""
    full = (list(args) + [0] * 6)[:6]
    data = struct.pack("<iIQ6Q", nr, arch, 0, *full)
    insns = [struct.unpack_from("<HBBI", prog, i) for i in range(0, len(prog), 8)]
    pc, acc = 0, 0
    while True:
        code, jt, jf, k = insns[pc]
        if code == seccomp.BPF_LD_W_ABS:
            acc = struct.unpack_from("<I", data, k)[0]
            pc += 1
        elif code == seccomp.BPF_JEQ_K:
            pc += 1 + (jt if acc == k else jf)
        elif code == seccomp.BPF_JSET_K:
            pc += 1 + (jt if acc & k else jf)
        elif code == seccomp.BPF_JA:
            pc += 1 + k
        elif code == seccomp.BPF_RET_K:
            return k
        else:
            raise AssertionError(f"unexpected BPF code {code:#x}")


def test_seccomp_filter_traps_exactly_the_table() -> None:
    arch = ARCHES["x86_64"]
    table = syscalls.load("x86_64")
    trapped = set(table)
    allow = {nr: spec.bpf_allow for nr, spec in table.items() if spec.bpf_allow}
    prog = seccomp.build_filter([seccomp.ArchRules(arch, trapped, allow)])
    for nr in range(0, 470):
        want = seccomp.SECCOMP_RET_TRACE if nr in trapped else seccomp.SECCOMP_RET_ALLOW
        assert _run_bpf(prog, nr, arch.audit_arch, (3, 0x7000, 0x8000, 0x100, 0x9000, 0)) == want, nr
    # fstat as glibc makes it (AT_EMPTY_PATH) and futimens (NULL path) need no stop
    newfstatat, statx, utimensat = 262, 332, 280
    assert _run_bpf(prog, newfstatat, arch.audit_arch, (3, 0x7000, 0x8000, 0x1000)) == seccomp.SECCOMP_RET_ALLOW
    assert _run_bpf(prog, newfstatat, arch.audit_arch, (3, 0x7000, 0x8000, 0x100)) == seccomp.SECCOMP_RET_TRACE
    assert _run_bpf(prog, statx, arch.audit_arch, (3, 0x7000, 0x1000)) == seccomp.SECCOMP_RET_ALLOW
    assert _run_bpf(prog, utimensat, arch.audit_arch, (3, 0, 0x7000, 0)) == seccomp.SECCOMP_RET_ALLOW
    assert _run_bpf(prog, utimensat, arch.audit_arch, (3, 1 << 32, 0x7000, 0)) == seccomp.SECCOMP_RET_TRACE
    assert _run_bpf(prog, 2 | arch.x32_bit, arch.audit_arch) == seccomp.SECCOMP_RET_ERRNO | seccomp.ENOSYS
    assert _run_bpf(prog, 5, 0x40000003) == seccomp.SECCOMP_RET_ALLOW  # i386: not ours


@pytest.mark.parametrize("head,want", [
    (b"#!/bin/sh\n", ("/bin/sh", None)),
    (b"#! /usr/bin/env  python3 -u \nx", ("/usr/bin/env", "python3 -u")),
    (b"#!/bin/bash -e -x\n", ("/bin/bash", "-e -x")),
    (b"#!\t/bin/sh\t-e\n", ("/bin/sh", "-e")),
    (b"#!\n", None),
    (b"\x7fELF", None),
])
def test_shebang_follows_linux(head: bytes, want) -> None:
    assert parse_shebang(head) == want


def test_read_elf_on_real_programs(debian_rootfs: Path) -> None:
    bash = read_elf(str(debian_rootfs / "usr/bin/bash"))
    assert bash is not None and bash.machine == EM_X86_64 and bash.interp == "/lib64/ld-linux-x86-64.so.2"
    busybox = read_elf("/bin/busybox")
    assert busybox is not None and busybox.interp is None
    assert read_elf(str(debian_rootfs / "etc/passwd")) is None
    # bookworm's glibc is 2.36: its loader takes --argv0
    assert loader_supports_argv0(str(debian_rootfs / "usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"))


def test_i386_table_and_its_filter_section() -> None:
    """i386's numbers are the kernel's syscall_32.tbl; its section of the filter traps them
    (socketcall only for the sub-calls the table handles), x86_64's section is unchanged."""
    i386 = ARCHES["i386"]
    table = syscalls.load("i386")
    by_name = {s.name: s for s in table.values()}
    # spot checks against syscall_32.tbl (the 32-bit uid calls carry the plain name)
    assert by_name["execve"].nr == 11 and by_name["open"].nr == 5 and by_name["stat64"].nr == 195
    assert by_name["fstatat64"].nr == 300 and by_name["chown"].nr == 212 and by_name["chown16"].nr == 182
    assert by_name["socketcall"].nr == 102 and by_name["bind"].nr == 361 and by_name["openat2"].nr == 437
    assert by_name["fanotify_mark"].paths[0].arg == 5  # the mask takes two registers on i386
    assert {s.name: s for s in syscalls.load("x86_64").values()}["fanotify_mark"].paths[0].arg == 4
    assert "uname" in by_name and "uname" not in {s.name for s in syscalls.load("x86_64").values()}
    missing = [n for n in PATH_SYSCALLS if n not in by_name and n not in ("newfstatat", "accept")]
    assert not missing
    from ocirun.engine.multiplex import SOCKETCALLS
    abi = syscalls.load_abi(i386)
    abi.trapped = set(table)
    rule = ("oneof", 0, tuple(c for c, (n, _) in SOCKETCALLS.items() if abi.names.get(n) in abi.trapped))
    x86 = ARCHES["x86_64"]
    x86_table = syscalls.load("x86_64")
    prog = seccomp.build_filter([
        seccomp.ArchRules(x86, set(x86_table)),
        seccomp.ArchRules(i386, abi.trapped, {102: rule, 300: ("flag", 3, 0x1000)}),
    ])
    for nr in range(0, 470):
        want = seccomp.SECCOMP_RET_TRACE if nr in table and nr not in (102, 300) else seccomp.SECCOMP_RET_ALLOW
        assert _run_bpf(prog, nr, i386.audit_arch, (0, 0x7000, 0, 0x1000)) == want, nr
        want = seccomp.SECCOMP_RET_TRACE if nr in x86_table else seccomp.SECCOMP_RET_ALLOW
        assert _run_bpf(prog, nr, x86.audit_arch, (3, 0x7000, 0x8000, 0x100)) == want, nr
    # socketcall: bind (2), connect (3), getsockname (6) stop; socket (1), send (9), recv (10) do not
    for call, want in ((2, True), (3, True), (6, True), (12, True), (1, False), (9, False), (10, False)):
        got = _run_bpf(prog, 102, i386.audit_arch, (call, 0x7000))
        assert got == (seccomp.SECCOMP_RET_TRACE if want else seccomp.SECCOMP_RET_ALLOW), call
    assert _run_bpf(prog, 300, i386.audit_arch, (3, 0x7000, 0x8000, 0x1000)) == seccomp.SECCOMP_RET_ALLOW
    assert _run_bpf(prog, 300, i386.audit_arch, (3, 0x7000, 0x8000, 0)) == seccomp.SECCOMP_RET_TRACE
    assert _run_bpf(prog, 5, 0xC00000B7) == seccomp.SECCOMP_RET_ALLOW  # an ABI we do not trace
