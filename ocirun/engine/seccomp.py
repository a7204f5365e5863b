"""The seccomp-bpf filter: SECCOMP_RET_TRACE for the syscalls the engine must
see, SECCOMP_RET_ALLOW for all others (they run at native speed).

The child installs it after PR_SET_NO_NEW_PRIVS, once the tracer has seized
it, right before execve: with no tracer a RET_TRACE syscall fails with ENOSYS,
and EXITKILL guarantees the filter never outlives the tracer.

Program layout (classic BPF over struct seccomp_data), one section per syscall ABI
the host runs natively (x86_64: its own and i386's int 0x80; see arch/):
    ld arch; jeq AUDIT_ARCH_1 -> ja section 1; ...; ALLOW (an ABI the engine
        does not know is not translated)
    section: ld nr; jset X32_BIT -> ERRNO(ENOSYS)  (x32 calls would bypass the table)
        per syscall with a bpf_allow rule (syscalls/__init__.py): ALLOW when the
        call names no path (fstat's AT_EMPTY_PATH, futimens' NULL), or, for a
        multiplexer (i386's socketcall), when its sub-call is not one the table
        traps; else TRACE
        jeq nr_1 -> TRACE ... jeq nr_n -> TRACE; ALLOW

The AT_EMPTY_PATH rule trusts the flag: a guest passing AT_EMPTY_PATH with a
non-empty path gets it resolved by the kernel untranslated (relative names
under a guest dirfd still land in the guest tree).
"""

from __future__ import annotations

import ctypes
import struct
from collections.abc import Sequence

from ocirun.engine.arch import Arch
from ocirun.engine.ptrace import libc
from ocirun.util.records import dataclass, field

BPF_LD_W_ABS = 0x20
BPF_JEQ_K = 0x15
BPF_JSET_K = 0x45
BPF_JA = 0x05
BPF_RET_K = 0x06

SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_TRACE = 0x7FF00000
SECCOMP_RET_ERRNO = 0x00050000
ENOSYS = 38

PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2

MAX_JUMP = 255  # jt is a u8


def _insn(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("<HBBI", code, jt, jf, k & 0xFFFFFFFF)


def _arg_lo(i: int) -> int:
    return 16 + 8 * i  # seccomp_data.args[i], low word (little-endian)


def _allow_block(nr: int, rule: tuple) -> list[bytes]:
    """Instructions: for syscall `nr`, ALLOW when `rule` holds, else TRACE; other
    syscalls fall through with the accumulator (nr) untouched."""
    if rule[0] == "flag":
        _, i, mask = rule
        return [
            _insn(BPF_JEQ_K, 0, 4, nr),
            _insn(BPF_LD_W_ABS, 0, 0, _arg_lo(i)),
            _insn(BPF_JSET_K, 0, 1, mask),
            _insn(BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW),
            _insn(BPF_RET_K, 0, 0, SECCOMP_RET_TRACE),
        ]
    if rule[0] == "null":
        _, i = rule
        return [
            _insn(BPF_JEQ_K, 0, 6, nr),
            _insn(BPF_LD_W_ABS, 0, 0, _arg_lo(i)),
            _insn(BPF_JEQ_K, 0, 3, 0),
            _insn(BPF_LD_W_ABS, 0, 0, _arg_lo(i) + 4),
            _insn(BPF_JEQ_K, 0, 1, 0),
            _insn(BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW),
            _insn(BPF_RET_K, 0, 0, SECCOMP_RET_TRACE),
        ]
    if rule[0] == "oneof":  # TRACE only when args[i] is one of `values` (socketcall's call)
        _, i, values = rule
        m = len(values)
        return [
            _insn(BPF_JEQ_K, 0, m + 3, nr),
            _insn(BPF_LD_W_ABS, 0, 0, _arg_lo(i)),
            *(_insn(BPF_JEQ_K, m - j, 0, v) for j, v in enumerate(values)),
            _insn(BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW),
            _insn(BPF_RET_K, 0, 0, SECCOMP_RET_TRACE),
        ]
    raise ValueError(f"unknown bpf_allow rule {rule!r}")


@dataclass(frozen=True)
class ArchRules:
    """One syscall ABI's section of the filter: the numbers it traps, and nr -> the rule
    under which that syscall runs without a stop."""

    arch: Arch
    trapped: set[int] | frozenset[int]
    allow: dict[int, tuple] = field(default_factory=dict)


def _section(rules: ArchRules) -> list[bytes]:
    nrs = sorted(rules.trapped)
    if len(nrs) >= MAX_JUMP:
        raise ValueError("too many trapped syscalls for one jump table")
    prog = [_insn(BPF_LD_W_ABS, 0, 0, 0)]  # seccomp_data.nr
    if rules.arch.x32_bit:
        prog += [
            _insn(BPF_JSET_K, 0, 1, rules.arch.x32_bit),
            _insn(BPF_RET_K, 0, 0, SECCOMP_RET_ERRNO | ENOSYS),
        ]
    for nr, rule in sorted(rules.allow.items()):
        if nr in rules.trapped:
            prog += _allow_block(nr, rule)
    n = len(nrs)
    for i, nr in enumerate(nrs):
        prog.append(_insn(BPF_JEQ_K, n - i, 0, nr))
    prog.append(_insn(BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW))
    prog.append(_insn(BPF_RET_K, 0, 0, SECCOMP_RET_TRACE))
    return prog


def build_filter(sections: Sequence[ArchRules]) -> bytes:
    """The BPF program (bytes of struct sock_filter[]): a dispatch on the syscall's
    AUDIT_ARCH, then each ABI's section."""
    bodies = [_section(s) for s in sections]
    head = [_insn(BPF_LD_W_ABS, 0, 0, 4)]  # seccomp_data.arch
    start = 1 + 2 * len(sections) + 1  # where the first section begins
    for k, rules in enumerate(sections):
        ja_at = 2 + 2 * k
        head.append(_insn(BPF_JEQ_K, 0, 1, rules.arch.audit_arch))
        head.append(_insn(BPF_JA, 0, 0, start - (ja_at + 1)))
        start += len(bodies[k])
    head.append(_insn(BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW))
    return b"".join(head + [insn for body in bodies for insn in body])


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


_prctl = libc.prctl
_prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
_prctl.restype = ctypes.c_int


def prepare(program: bytes) -> tuple[ctypes.Array, _SockFprog]:
    """Build the C structures before fork (the child then only makes two prctl calls)."""
    buf = ctypes.create_string_buffer(program, len(program))
    fprog = _SockFprog(len(program) // 8, ctypes.addressof(buf))
    return buf, fprog


def install(prepared: tuple[ctypes.Array, _SockFprog]) -> int:
    """In the child: no_new_privs + the filter. Returns 0 or an errno."""
    if _prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        return ctypes.get_errno()
    if _prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(prepared[1]), 0, 0) != 0:
        return ctypes.get_errno()
    return 0
