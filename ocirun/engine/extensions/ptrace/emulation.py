"""The ptrace emulation itself (the extension's front, __init__.py, loads it at the guest's
first ptrace(2) call): what __init__.py's docstring describes, per request, stop and wait."""

from __future__ import annotations

import errno
import os
import signal

from ocirun.engine import ptrace as pt
from ocirun.engine.extension import (
    STOP_ENTRY,
    STOP_EVENT,
    STOP_EXIT,
    STOP_GROUP,
    STOP_INTERRUPT,
    Stop,
)
from ocirun.engine.extensions.ptrace import requests as rq
from ocirun.engine.extensions.ptrace import wait
from ocirun.engine.extensions.ptrace.loader import LoaderFilter
from ocirun.engine.extensions.ptrace.state import (
    FORK_EVENTS,
    O_EXITKILL,
    O_REAL,
    O_VALID,
    Ptracee,
    Ptracer,
    stopped,
)

TYPE_CHECKING = False  # typing's, without importing typing (start-up time)
if TYPE_CHECKING:
    from ocirun.engine.extension import Engine
    from ocirun.engine.syscall import Syscall
    from ocirun.engine.tracee import Tracee


class Emulation:
    """The hooks of PtraceEmulation from the guest's first ptrace(2) on."""

    def __init__(self, engine: Engine, listening: set[int]) -> None:
        self.engine = engine
        self.wait_names = {"wait4": False, "waitid": True}  # -> waitid's arguments
        self.ptracees: dict[int, Ptracee] = {}
        self.tracers: dict[int, Ptracer] = {}
        self.listening = listening  # threads the engine left in a group stop (PTRACE_LISTEN)
        self.interrupted: set[int] = set()  # threads our PTRACE_INTERRUPT will stop once
        self.loader = LoaderFilter(engine)

    # ------------------------------------------------------------ syscalls
    def on_enter(self, t: Tracee, sc: Syscall) -> None:
        name = sc.name
        if sc.arch.word != 8:  # a 32-bit tracer's structures are not translated: the kernel answers
            return
        if name == "ptrace":
            result = self._request(t, sc)
            if result is not None:
                sc.skip(result)
        elif name in self.wait_names:
            self._wait_enter(t, sc, self.wait_names[name])
        elif self.ptracees and t.pid in self.ptracees and self.ptracees[t.pid].syscalls:
            sc.want_exit()  # its exit stop gets the guest's path pointers back

    def on_exit(self, t: Tracee, sc: Syscall) -> None:
        tr = self.tracers.get(t.tgid)
        w = tr.waits.get(t.pid) if tr is not None else None
        if w is None or w.sc is not sc:
            return
        del tr.waits[t.pid]
        result = sc.result
        if result != -errno.ECHILD and not (result == 0 and w.options & wait.WNOHANG):
            return  # the kernel reaped a real child (or failed): its answer stands
        if not any(wait.matches(w, t, p) for p in tr.ptracees.values()):
            return
        p = wait.ready(tr, w, t)
        if p is not None:
            sc.set_result(wait.take(tr, w, t, p))
        elif w.options & wait.WNOHANG:
            sc.set_result(0)
        else:
            w.kept = True  # no child the kernel knows of: wait here for a tracee's stop
            tr.waits[t.pid] = w

    def _wait_enter(self, t: Tracee, sc: Syscall, is_waitid: bool) -> None:
        tr = self.tracers.get(t.tgid)
        if tr is None or not tr.ptracees:
            return
        w = wait.parse(t, sc, is_waitid)
        if w is None or not any(wait.matches(w, t, p) for p in tr.ptracees.values()):
            return
        p = wait.ready(tr, w, t)
        if p is not None:
            sc.skip(wait.take(tr, w, t, p))
            return
        tr.waits[t.pid] = w  # the kernel waits; a tracee's stop interrupts it (_notify)
        sc.want_exit()

    # ---------------------------------------------------------------- stops
    def on_stop(self, t: Tracee, stop: Stop) -> bool:
        pid = t.pid
        if self.listening:
            self.listening.discard(pid)
        if stop.kind == STOP_INTERRUPT and pid in self.interrupted:
            self.interrupted.discard(pid)
            return False  # our own PTRACE_INTERRUPT of a waiting tracer
        if stop.kind == STOP_EXIT and self.tracers:
            tr = self.tracers.get(t.tgid)
            if tr is not None and pid in tr.waits and tr.waits[pid].kept:
                return True
        p = self.ptracees.get(pid)
        if p is None:
            if stop.kind == STOP_GROUP:
                self.listening.add(pid)
            return False
        if p.real_options != pt.SEIZE_OPTIONS | (p.options & O_REAL):
            self._real_options(p)
        if stop.kind == STOP_EVENT and stop.event in FORK_EVENTS:
            self._adopt_child(p, stop.event)
        elif stop.kind == STOP_EVENT and stop.event == pt.PTRACE_EVENT_EXEC:
            return self._exec_stop(p, stop)
        status: int | None
        if (stop.kind == STOP_ENTRY or stop.kind == STOP_EXIT) and p.loader is not None:
            hidden = self.loader.hides(p, stop)
            if p.exec_status is not None and p.loader is None:  # the exec stop, once the program is mapped
                status, p.exec_status = p.exec_status, None
                t.resume_request = 0
                return self._keep(p, stop, status)
            if hidden:
                return False
        if stop.kind == STOP_EXIT and stop.sc is not None and p.syscalls:
            _restore_args(stop.sc)
        status = p.status_of(stop)
        return status is not None and self._keep(p, stop, status)

    def _keep(self, p: Ptracee, stop: Stop, status: int) -> bool:
        """Keep p in this stop for its tracer, which gets `status`."""
        p.stop, p.status, p.reported = stop, status, False
        self._notify(p)
        return True

    def _exec_stop(self, p: Ptracee, stop: Stop) -> bool:
        """A traced process exec'd. Without PTRACE_O_TRACEEXEC a PTRACE_TRACEME/ATTACH tracer
        gets the kernel's SIGTRAP after the execve. A tracer that is not following syscalls
        (gdb) gets its stop once the loader has mapped a dynamic program: it then finds
        the program where /proc/PID/auxv says (path/auxv.py)."""
        p.loader = self.loader.after_exec(p.tracee)
        status = p.status_of(stop)
        legacy = status is None and not p.seized
        if p.loader is not None and not p.syscalls and (status is not None or legacy):
            p.exec_status = status if status is not None else stopped(signal.SIGTRAP)
            p.tracee.resume_request = pt.PTRACE_SYSCALL  # follow the loader's calls meanwhile
            return False
        if legacy:
            _kill(p.tid, signal.SIGTRAP)
        return status is not None and self._keep(p, stop, status)

    def _adopt_child(self, p: Ptracee, event: int) -> None:
        """A traced process forked with the matching PTRACE_O_TRACE*: its tracer traces the child."""
        if not p.options & (1 << event):  # PTRACE_O_TRACEFORK = 1 << PTRACE_EVENT_FORK, ...
            return
        try:
            child = self.engine.tracee(pt.geteventmsg(p.tid))
        except OSError:
            return
        if child is not None and child.pid not in self.ptracees:
            self._attach(child, p.tracer, p.seized, p.options).adopted = True

    def _notify(self, p: Ptracee) -> None:
        """p has a new status for its tracer: SIGCHLD, and wake a wait that takes it."""
        tr = self.tracers.get(p.tracer)
        if tr is None:
            return
        try:
            os.kill(tr.tgid, signal.SIGCHLD)
        except OSError:
            pass
        for tid, w in list(tr.waits.items()):
            waiter = self.engine.tracee(tid)
            if waiter is None:
                del tr.waits[tid]
                continue
            if not wait.matches(w, waiter, p):
                continue
            if w.kept:  # kept at its exit: answer now
                del tr.waits[tid]
                w.sc.set_result(wait.take(tr, w, waiter, p))
                self.engine.resume(waiter)
            elif not w.interrupted:  # in the kernel: make it restart and come back through its entry
                w.interrupted = True  # (or, if the kernel answered meanwhile, on_exit takes it)
                self._interrupt(tid)
            return

    def _interrupt(self, tid: int) -> None:
        if pt.request(rq.INTERRUPT, tid)[1] == 0:
            self.interrupted.add(tid)

    # ------------------------------------------------------------- requests
    def _request(self, t: Tracee, sc: Syscall) -> int | None:
        """The guest's ptrace(2): its result (None: the kernel's business, a pid outside the guest)."""
        req, pid, addr, data = sc.args[0], sc.arg_int(1), sc.args[2], sc.args[3]
        if req == rq.TRACEME:
            parent = t.parent
            if t.pid in self.ptracees or parent is None or parent.tgid == t.tgid:
                return -errno.EPERM
            self._attach(t, parent.tgid, False, 0)
            return 0
        if req in (rq.ATTACH, rq.SEIZE):
            target = self.engine.tracee(pid)
            if target is None:
                return None
            return self._attach_request(t, target, req == rq.SEIZE, addr, data)
        p = self.ptracees.get(pid)
        if p is None or p.tracer != t.tgid or p.gone:
            return -errno.ESRCH
        if req == rq.KILL:
            _kill(p.tid, signal.SIGKILL)
            if p.stop is not None:
                self._release(p, 0)
            return 0
        if req == rq.INTERRUPT:
            if not p.seized:
                return -errno.EIO
            if p.stop is None:
                p.interrupt = True
                pt.request(rq.INTERRUPT, p.tid)
            return 0
        if p.stop is None:
            return -errno.ESRCH  # not stopped for its tracer, as the kernel says
        return self._stopped_request(t, p, req, addr, data)

    def _stopped_request(self, t: Tracee, p: Ptracee, req: int, addr: int, data: int) -> int:
        """A request on a tracee kept in a stop for its tracer `t`."""
        if req in rq.RESTART:
            if data > 64:
                return -errno.EIO
            p.syscalls = req == rq.SYSCALL
            p.tracee.resume_request = rq.RESTART[req]
            self._release(p, data)
            return 0
        if req == rq.DETACH:
            self._detach(p, data if data <= 64 else 0)
            return 0
        if req == rq.LISTEN:
            if not p.seized or p.stop.kind not in (STOP_GROUP, STOP_INTERRUPT):
                return -errno.EIO
            p.stop = None
            p.reported = p.listened = True
            pt.listen(p.tid)
            return 0
        if req == rq.SETOPTIONS:
            return self._set_options(p, data)
        if req == rq.ARCH_PRCTL:
            return rq.arch_prctl(t, p.tid, addr, data)
        if req in rq.FORWARDED:
            return rq.forward(t, req, p.tid, addr, data)
        return -errno.EIO

    def _attach_request(self, t: Tracee, target: Tracee, seize: bool, addr: int, data: int) -> int:
        if target.tgid == t.tgid or target.pid in self.ptracees:
            return -errno.EPERM
        if seize and (addr or data & ~O_VALID):
            return -errno.EIO
        self._attach(target, t.tgid, seize, data if seize else 0)
        if not seize:
            _kill(target.pid, signal.SIGSTOP)
        if target.pid in self.listening:  # in a group stop: it traps again for its new tracer
            self.listening.discard(target.pid)
            pt.request(rq.INTERRUPT, target.pid)
        return 0

    def _attach(self, target: Tracee, tracer: int, seized: bool, options: int) -> Ptracee:
        p = Ptracee(target, tracer, seized, options)
        self.ptracees[target.pid] = p
        tr = self.tracers.get(tracer)
        if tr is None:
            tr = self.tracers[tracer] = Ptracer(tracer)
            self._wake_waiting_tracer(tracer)
        tr.ptracees[target.pid] = p
        self._real_options(p)
        self.engine.every_stop_in_python()
        return p

    def _wake_waiting_tracer(self, tgid: int) -> None:
        """A new tracer may already be blocked in wait4/waitid (a child's PTRACE_TRACEME
        came after): interrupt it so its wait comes back through on_enter."""
        nrs = {str(self.engine.names[n]) for n in self.wait_names if n in self.engine.names}
        try:
            tids = os.listdir(f"/proc/{tgid}/task")
        except OSError:
            return
        for tid in tids:
            try:
                with open(f"/proc/{tgid}/task/{tid}/syscall") as f:
                    nr = f.read().split(" ", 1)[0]
            except OSError:
                continue
            if nr in nrs:
                self._interrupt(int(tid))

    def _set_options(self, p: Ptracee, options: int) -> int:
        if options & ~O_VALID:
            return -errno.EINVAL
        p.options = options
        self._real_options(p)
        return 0

    @staticmethod
    def _real_options(p: Ptracee, detach: bool = False) -> None:
        """Ask the kernel for the events the guest tracer wants and the engine does not
        (PTRACE_O_TRACEEXIT, _TRACEVFORKDONE); a tracee not in a stop gets them at its next one."""
        want = pt.SEIZE_OPTIONS | (0 if detach else p.options & O_REAL)
        if want != p.real_options and pt.request(pt.PTRACE_SETOPTIONS, p.tid, 0, want)[1] == 0:
            p.real_options = want

    def _release(self, p: Ptracee, sig: int) -> None:
        """Let a tracee kept for its tracer run on (delivering `sig`)."""
        p.stop = None
        p.reported = True
        self.engine.resume(p.tracee, sig)

    def _detach(self, p: Ptracee, sig: int = 0) -> None:
        self.ptracees.pop(p.tid, None)
        tr = self.tracers.get(p.tracer)
        if tr is not None:
            tr.ptracees.pop(p.tid, None)
        p.tracee.resume_request = 0
        self._real_options(p, detach=True)
        if p.stop is not None:
            self._release(p, sig)

    # ------------------------------------------------------------ process end
    def on_process_exit(self, t: Tracee) -> None:
        self.listening.discard(t.pid)
        self.interrupted.discard(t.pid)
        p = self.ptracees.pop(t.pid, None)
        if p is not None:
            self._tracee_gone(p, t)
        tr = self.tracers.get(t.tgid)
        if tr is not None:
            tr.waits.pop(t.pid, None)
            if t.pid == t.tgid:
                self._tracer_gone(tr)

    def _tracee_gone(self, p: Ptracee, t: Tracee) -> None:
        tr = self.tracers.get(p.tracer)
        if tr is None:
            return
        real_child = t.pid == t.tgid and t.parent is not None and t.parent.tgid == p.tracer
        if real_child:  # the kernel reports its end to its parent, the tracer
            tr.ptracees.pop(p.tid, None)
            return
        p.stop, p.status, p.reported, p.gone = None, t.status, False, True
        self._notify(p)

    def _tracer_gone(self, tr: Ptracer) -> None:
        """The tracer ended: its tracees are detached (killed with PTRACE_O_EXITKILL)."""
        del self.tracers[tr.tgid]
        for p in list(tr.ptracees.values()):
            if p.gone:
                continue
            if p.options & O_EXITKILL:
                _kill(p.tid, signal.SIGKILL)
            self._detach(p)


def _restore_args(sc: Syscall) -> None:
    """The guest's own path pointers back in the argument registers (the core leaves its own)."""
    for i, (_, guest_value) in (sc.rewritten or {}).items():
        try:
            sc.set_arg(i, guest_value)
        except OSError:
            return


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except OSError:
        pass
