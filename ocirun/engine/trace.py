"""The `-v 2` syscall trace: one strace-like line per trapped syscall, with the
argument names and C types of python-ptrace's prototypes, path arguments as the
guest gave them and as the kernel sees them (`"/etc/passwd" -> "/root/etc/passwd"`).

Only python-ptrace's prototypes are used: its syscall number tables are older than
the kernels ocirun runs on (no fchmodat2, statmount, file_getattr...), so the
engine keeps its own numbers (ocirun/engine/syscalls/), and its debugger loop costs
several times the CPU per stop of the engine's own ctypes calls (ptrace.py).
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # typing's, without importing typing (start-up time)
if TYPE_CHECKING:
    from ocirun.engine.syscall import Syscall
    from ocirun.engine.tracee import Tracee

Prototype = tuple[tuple[str, str], ...]  # (C type, name) of each argument
_SIGNED = frozenset({"int", "long", "pid_t", "loff_t", "off_t", "ssize_t", "clockid_t", "timer_t", "mqd_t"})
_UNKNOWN: Prototype = tuple(("", f"arg{i}") for i in range(4))


def _prototypes() -> dict[str, tuple[str, Prototype]]:
    from ptrace.syscall.prototypes import SYSCALL_PROTOTYPES  # only for -v 2 (once)

    return SYSCALL_PROTOTYPES


def _value(sc: Syscall, ctype: str, pname: str, value: int) -> str:
    if ctype == "const char *" and value:
        try:
            return repr(sc.tracee.read_string(value))
        except OSError:
            return hex(value)
    if "flag" in pname:
        return hex(value & 0xFFFFFFFF)
    if pname == "mode":
        return oct(value & 0xFFFFFFFF)
    if ctype in _SIGNED:
        bits = 32 if ctype == "int" else 64
        value &= (1 << bits) - 1
        return str(value - (1 << bits) if value >> (bits - 1) else value)
    if "*" in ctype:
        return hex(value) if value else "NULL"
    return hex(value) if value > 9 else str(value)


def format_call(sc: Syscall) -> str:
    """name(arg=value, ...) [= result of a call the tracer answered]."""
    proto = _prototypes().get(sc.name)
    params = proto[1] if proto is not None else _UNKNOWN
    shown = []
    for i, (ctype, pname) in enumerate(params[:6]):
        guest = sc.guest_paths.get(i)
        if guest is not None:
            host = sc.host_paths.get(i)
            text = f"{guest!r}" if host is None or host == guest else f"{guest!r} -> {host!r}"
        else:
            text = _value(sc, ctype, pname, sc.args[i])
        shown.append(f"{pname}={text}")
    res = f" = {sc.skip_result}" if sc.skipped else ""
    return f"{sc.name}({', '.join(shown)}){res}"


def trace_call(t: Tracee, sc: Syscall) -> None:
    print(f"[{t.pid}] {format_call(sc)}", file=sys.stderr)


def trace_other(t: Tracee, name: str) -> None:
    """-v 3 in the no-seccomp mode: an untrapped syscall."""
    print(f"[{t.pid}] {name}(...)", file=sys.stderr)
