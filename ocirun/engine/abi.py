"""Which syscall ABI a stop is in, and which call it makes.

An x86_64 host runs i386 programs natively: their calls reach the tracer with
AUDIT_ARCH_I386 (PTRACE_GET_SYSCALL_INFO), i386's numbers and 32-bit arguments.
The tracer keeps one Abi (a loaded table, ocirun/engine/syscalls) per architecture
it traces and picks it at each stop; a process switches ABI only at exec, where its
code segment says which one it runs now. i386's socketcall is handed on as the direct
call it multiplexes (ocirun/engine/multiplex.py).
"""

from __future__ import annotations

from ocirun.engine.multiplex import MuxArgs, demux

TYPE_CHECKING = False  # typing's, without importing typing (start-up time)
if TYPE_CHECKING:
    from ocirun.engine.ptrace import SyscallInfo
    from ocirun.engine.syscalls import Abi, SyscallSpec
    from ocirun.engine.tracee import Tracee

CS_SLOT = 17  # x86's user_regs_struct.cs (Arch.cs)
_MASK32 = 0xFFFFFFFF


def of_stop(abis: dict[int, Abi], native: Abi, info: SyscallInfo) -> tuple[Abi, list[int]] | None:
    """The ABI of a syscall stop and its arguments (32-bit ones masked); None for an
    ABI the tracer does not know (the kernel runs the call as it is)."""
    if info.arch == native.arch.audit_arch:
        return native, list(info.args)
    abi = abis.get(info.arch)
    if abi is None:
        return None
    return abi, [a & _MASK32 for a in info.args]


def of_program(abis: dict[int, Abi], t: Tracee) -> Abi:
    """The ABI of the program a process runs now (x86: told by its code segment)."""
    try:
        cs = t.get_reg(CS_SLOT)
    except OSError:
        return t.abi
    return of_code_segment(abis, cs, t.abi)


def of_code_segment(abis: dict[int, Abi], cs: int, default: Abi) -> Abi:
    """The ABI whose code segment is `cs` (x86), else `default`."""
    return next((abi for abi in abis.values() if abi.arch.cs == cs), default)


def direct_call(t: Tracee, abi: Abi, nr: int, args: list[int]
                ) -> tuple[int, list[int], SyscallSpec | None, MuxArgs | None] | None:
    """(number, arguments, spec, where the arguments live) of the call a stop makes:
    itself, or the call a socketcall multiplexes; None when the kernel must answer
    (an unknown sub-call, an unreadable argument array)."""
    spec = abi.table.get(nr)
    if spec is None or spec.kind != "socketcall":
        return nr, args, spec, None
    direct = demux(t, abi, args)
    if direct is None:
        return None
    call, args, mux = direct
    return call, args, abi.table.get(call), mux
