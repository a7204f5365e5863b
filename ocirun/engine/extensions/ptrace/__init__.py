"""ptrace inside the guest (strace, gdb): PRoot's ptrace emulation, as an extension.

ptrace does not nest: the engine is the real tracer of every guest process, so a guest
process's own ptrace(2) would fail (EPERM) and its tracee's stops would reach the engine
only. This extension emulates the guest tracer's side (PRoot's src/ptrace/):

  ptrace(2)      TRACEME, ATTACH, SEIZE record who traces whom; the requests on a tracee
                 kept in a stop (PEEK/POKE, GET/SETREGS, GETREGSET, GETSIGINFO,
                 GET_SYSCALL_INFO...) are made by the engine on the guest's behalf
                 (requests.py); CONT, SYSCALL, SINGLESTEP, DETACH, KILL, LISTEN,
                 INTERRUPT resume or stop it as the kernel would
  stops          (on_stop) a stop of a guest-traced process that its tracer must see
                 (signal, group stop, event per its PTRACE_O_* options, syscall entry
                 and exit under PTRACE_SYSCALL) is kept: the process stays stopped, the
                 tracer gets SIGCHLD and its wait reports the status (state.py)
  wait4/waitid   (wait.py) answer with those statuses

Syscall-entry stops are the kernel's own, taken before the engine translates anything
(the guest tracer sees the guest's arguments); exit stops come after every fix-up,
with the rewritten path pointers put back; the loader step of a dynamic program's exec
(`ld.so PROGRAM` opening and mapping PROGRAM) is hidden: strace shows one execve as
on Linux. Once a guest process traces another, the compiled fast path steps aside.

Every tracer loads the extension, few guests trace: until a guest's first ptrace(2) call
the hooks here do nothing but note group stops, and the emulation (emulation.py, with
its state, requests, waits and loader filter) is imported then (start-up time).
"""

from __future__ import annotations

from ocirun.engine.extension import STOP_GROUP, Extension

TYPE_CHECKING = False  # typing's, without importing typing (start-up time)
if TYPE_CHECKING:
    from ocirun.engine.extension import Engine, Stop
    from ocirun.engine.extensions.ptrace.emulation import Emulation
    from ocirun.engine.syscall import Syscall
    from ocirun.engine.tracee import Tracee

WAIT_SYSCALLS = ("wait4", "waitid")


class PtraceEmulation(Extension):
    name = "ptrace"
    syscalls = frozenset({"ptrace", *WAIT_SYSCALLS})
    only_own_syscalls = True
    fast_pass = frozenset(WAIT_SYSCALLS)  # nothing to answer before the first guest tracer
    plain_stops = True  # the same: no stop to keep before the first guest tracer

    def attach(self, engine: Engine) -> None:
        self.engine = engine
        self.listening: set[int] = set()  # threads the engine left in a group stop (PTRACE_LISTEN)
        self.active: Emulation | None = None  # from the first ptrace(2) call on

    def on_enter(self, t: Tracee, sc: Syscall) -> None:
        if self.active is None:
            if sc.name != "ptrace":
                return  # a wait with no guest tracer yet: the kernel's
            from ocirun.engine.extensions.ptrace.emulation import Emulation

            self.active = Emulation(self.engine, self.listening)
        self.active.on_enter(t, sc)

    def on_exit(self, t: Tracee, sc: Syscall) -> None:
        if self.active is not None:
            self.active.on_exit(t, sc)

    def on_stop(self, t: Tracee, stop: Stop) -> bool:
        if self.active is not None:
            return self.active.on_stop(t, stop)
        if stop.kind == STOP_GROUP:  # one a later PTRACE_ATTACH must make trap again
            self.listening.add(t.pid)
        else:
            self.listening.discard(t.pid)
        return False

    def on_process_exit(self, t: Tracee) -> None:
        if self.active is not None:
            self.active.on_process_exit(t)
        else:
            self.listening.discard(t.pid)
