"""Run a command with some syscalls refused, the way Android (SELinux, its seccomp policy) refuses them.

A seccomp filter (SECCOMP_RET_ERRNO) is installed on this process and inherited by
everything it starts; no privilege is needed (no_new_privs). For example

    python -m tests.helpers.deny link,linkat=EACCES -- COMMAND...
    deny_argv({"link": "EACCES", "linkat": "EACCES"}, [COMMAND...])

Limit: an ERRNO action outranks the engine's own SECCOMP_RET_TRACE, so a guest call
the filter refuses never reaches the tracer in the engine's seccomp mode; only the
ptrace-only mode (OCIRUN_NO_SECCOMP=1, where the tracer sees the call before any
filter) shows what the engine makes of a call the kernel would refuse.

NAME=TRACE asks for SECCOMP_RET_TRACE instead: with no tracer the call fails with
ENOSYS (a kernel without the call, such as Android's without SysV IPC), and a seccomp
tracer still gets its stop first, as on such a kernel. A call the tracer lets through
runs for real, so only an emulation that answers the call itself is shown faithfully.

NAME=TRAP asks for SECCOMP_RET_TRAP, as Android's app filter answers most calls it
forbids: the caller gets SIGSYS (si_code SYS_SECCOMP; killed, exit 159, unless it
handles it), and a seccomp tracer gets no syscall stop, only the signal's stop.
A NAME may be a number: `-1=TRAP` traps what a tracer's skipped call is filtered as in
the ptrace-only mode, as Android's allow-list does.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
import sys

AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
RET_ALLOW = 0x7FFF0000
RET_ERRNO = 0x00050000
RET_TRACE = 0x7FF00000
RET_TRAP = 0x00030000
TRACE, TRAP = -1, -2  # the pseudo errnos of NAME=TRACE and NAME=TRAP
_ACTIONS = {"TRACE": TRACE, "TRAP": TRAP}
# BPF: ld w abs, jeq k, ret k
LD_ABS, JEQ, RET = 0x20, 0x15, 0x06


def deny_argv(calls: dict[str, str], argv: list[str]) -> list[str]:
    """The argv that runs `argv` with each syscall of `calls` failing with its errno name."""
    spec = ",".join(f"{name}={err}" for name, err in calls.items())
    return [sys.executable, "-m", "tests.helpers.deny", spec, "--", *argv]


def _insn(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("<HBBI", code, jt, jf, k)


def build(denied: dict[int, int], audit_arch: int) -> bytes:
    """A filter: other architectures and syscalls allowed, each nr in `denied` -> its errno
    (or TRACE/TRAP)."""
    prog = [_insn(LD_ABS, 0, 0, 4), _insn(JEQ, 1, 0, audit_arch), _insn(RET, 0, 0, RET_ALLOW),
            _insn(LD_ABS, 0, 0, 0)]
    for nr, err in denied.items():
        prog += [_insn(JEQ, 0, 1, nr), _insn(RET, 0, 0, _action(err))]
    prog.append(_insn(RET, 0, 0, RET_ALLOW))
    return b"".join(prog)


def _action(err: int) -> int:
    return RET_TRACE if err == TRACE else RET_TRAP if err == TRAP else RET_ERRNO | err


def install(program: bytes) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    buf = ctypes.create_string_buffer(program, len(program))
    fprog = struct.pack("<HxxxxxxQ", len(program) // 8, ctypes.addressof(buf))
    fbuf = ctypes.create_string_buffer(fprog, len(fprog))
    for args in ((PR_SET_NO_NEW_PRIVS, 1, 0), (PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(fbuf))):
        if libc.prctl(*args, 0, 0) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"prctl: {os.strerror(err)}")


def _parse(spec: str) -> dict[int, int]:
    from ocirun.engine.syscalls import names

    numbers = names(os.uname().machine)
    denied = {}
    for item in spec.split(","):
        name, _, err = item.partition("=")
        nr = numbers.get(name)  # e.g. no `link` on aarch64: only linkat
        if name.lstrip("-").isdigit():  # a number: -1 is what a tracer's skipped call is filtered as
            nr = int(name) & 0xFFFFFFFF
        if nr is not None:
            denied[nr] = _ACTIONS[err] if err in _ACTIONS else getattr(errno, err or "EPERM")
    return denied


def main(args: list[str]) -> int:
    if len(args) < 3 or args[1] != "--":
        print("usage: python -m tests.helpers.deny NAME[=ERRNO],... -- COMMAND...", file=sys.stderr)
        return 2
    install(build(_parse(args[0]), AUDIT_ARCH[os.uname().machine]))
    os.execvp(args[2], args[2:])
    return 127


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
