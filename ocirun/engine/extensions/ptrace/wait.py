"""wait4/waitid of a guest tracer: the stops of its tracees as the kernel reports them.

The engine is the real tracer of every guest process, so the kernel reports their
ptrace-stops to it, never to the guest tracer. A guest tracer's wait that a pending
stop answers is answered at its entry (the kernel never runs it); otherwise the wait
runs in the kernel (it still reaps real children) and, when one of the tracer's
tracees stops meanwhile, PTRACE_INTERRUPT makes the kernel restart it, so that it
comes back through its entry. When the kernel has no child to wait for (ECHILD: the
tracees are threads or attached processes), the tracer is kept at the syscall's
exit until a tracee stops.
"""

from __future__ import annotations

import os
import struct

from ocirun.engine.extensions.ptrace.state import Ptracee, Ptracer, WaitCall

TYPE_CHECKING = False  # typing's, without importing typing (start-up time)
if TYPE_CHECKING:
    from ocirun.engine.syscall import Syscall
    from ocirun.engine.tracee import Tracee

WNOHANG = 1
WEXITED = 4
WNOWAIT = 0x01000000
P_ALL, P_PID, P_PGID = 0, 1, 2
SIGCHLD = 17
CLD_EXITED, CLD_KILLED, CLD_DUMPED, CLD_TRAPPED = 1, 2, 3, 4
RUSAGE_SIZE = 144
SIGINFO_SIZE = 128


def parse(t: Tracee, sc: Syscall, waitid: bool) -> WaitCall | None:
    """The wait call's arguments (None: a form the emulation leaves to the kernel)."""
    a = sc.args
    if not waitid:
        return WaitCall(sc, False, sc.arg_int(0), a[2] & 0xFFFFFFFF, a[1], a[3])
    idtype, ident = a[0] & 0xFFFFFFFF, sc.arg_int(1)
    if idtype == P_ALL:
        pid = -1
    elif idtype == P_PID:
        pid = ident
    elif idtype == P_PGID:
        pid = -(ident or os.getpgid(t.pid))
    else:
        return None  # P_PIDFD
    return WaitCall(sc, True, pid, a[3] & 0xFFFFFFFF, a[2], a[4])


def matches(w: WaitCall, waiter: Tracee, p: Ptracee) -> bool:
    """Whether `w` waits for `p` (every tracee is eligible whatever __WALL/__WCLONE say)."""
    if p.gone and w.waitid and not w.options & WEXITED:
        return False
    pid = w.pid
    if pid == -1 or pid == p.tid:
        return True
    if pid > 0:
        return False
    try:
        return os.getpgid(p.tid) == (os.getpgid(waiter.pid) if pid == 0 else -pid)
    except OSError:
        return False


def ready(tr: Ptracer, w: WaitCall, waiter: Tracee) -> Ptracee | None:
    """A tracee `w` waits for with a status the tracer has not taken yet."""
    for p in tr.ptracees.values():
        if not p.reported and matches(w, waiter, p):
            return p
    return None


def take(tr: Ptracer, w: WaitCall, waiter: Tracee, p: Ptracee) -> int:
    """Write p's status where the wait call wants it; the call's result (-errno on a bad pointer)."""
    try:
        if w.waitid:
            if w.status_addr:
                waiter.write(w.status_addr, _siginfo(p))
        elif w.status_addr:
            waiter.write_u32(w.status_addr, p.status)
        if w.rusage_addr:
            waiter.write(w.rusage_addr, bytes(RUSAGE_SIZE))
    except OSError:
        return -14  # EFAULT
    if not w.options & WNOWAIT:
        p.reported = True
        if p.gone:
            del tr.ptracees[p.tid]
    return 0 if w.waitid else p.tid


def _siginfo(p: Ptracee) -> bytes:
    """waitid's siginfo_t for p's status (si_signo, si_errno, si_code, si_pid, si_uid, si_status)."""
    status = p.status
    if status & 0x7F == 0x7F:
        code, value = CLD_TRAPPED, status >> 8 & 0xFFFF
    elif status & 0x7F == 0:
        code, value = CLD_EXITED, status >> 8 & 0xFF
    else:
        code, value = (CLD_DUMPED if status & 0x80 else CLD_KILLED), status & 0x7F
    head = struct.pack("<iiiiiIi", SIGCHLD, 0, code, 0, p.tid, os.getuid(), value)
    return head + bytes(SIGINFO_SIZE - len(head))
