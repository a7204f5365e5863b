"""The guest's process tree as the tracer sees it: new tracees, fork/clone/exec
events, signal and group stops, and processes that end.

A mixin of the Tracer (ocirun/engine/loop.py): the loop dispatches each non-syscall
stop here; what a tracee inherits at fork, and what exec and exit reset, live in one
place so that extensions' on_fork/on_exec/on_process_exit hooks see one order.
"""

from __future__ import annotations

import _signal as signal  # the C module: `signal` builds its enums at import (~2 ms a start)
import os

from ocirun.engine import abi as abi_of
from ocirun.engine import extension as hooks
from ocirun.engine import fastexec, fastpath
from ocirun.engine import ptrace as pt
from ocirun.engine.sigsys import answer_sigsys
from ocirun.engine.tracee import FsState, Tracee

TYPE_CHECKING = False  # typing's, without importing typing (start-up time)
if TYPE_CHECKING:
    from ocirun.engine.loop import Tracer
    from ocirun.engine.syscalls import Abi

STOP_SIGNALS = {signal.SIGSTOP, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU}
CLONE_FS = 0x200
CLONE_THREAD = 0x10000


class ProcessTree:
    """The Tracer's process-tree events (`self` is the Tracer)."""

    def _new_tracee(self: Tracer, pid: int, parent: Tracee | None, share_fs: bool = False) -> Tracee:
        t = Tracee(pid=pid, engine=self, parent=parent, view=self.root_view, abi=self.abi)
        if parent is not None:
            self._inherit(t, parent, share_fs)
        self.tracees[pid] = t
        return t

    def _inherit(self: Tracer, child: Tracee, parent: Tracee, share_fs: bool) -> None:
        child.parent = parent
        child.view = parent.view
        child.abi = parent.abi
        child.exe = parent.exe
        child.loader_words = parent.loader_words
        child.data = dict(parent.data)
        if share_fs:
            child.fs = parent.fs
            parent.fs.users += 1
            if self.fast is not None:  # the mirror holds the cwds of unshared FsStates only
                self.fast.forget_cwd(parent.pid)
        else:
            pfs = parent.fs
            child.fs = FsState(cwd=pfs.cwd, host_cwd=pfs.host_cwd, named=dict(pfs.named),
                               origin=(pfs, pfs.changes) if pfs.cwd is None else None)
            fastpath.mirror_cwd(self.fast, child)

    def _event_stop(self: Tracer, t: Tracee, event: int, sig: int) -> None:
        if event in (pt.PTRACE_EVENT_FORK, pt.PTRACE_EVENT_VFORK, pt.PTRACE_EVENT_CLONE):
            self._fork_event(t, event)
        elif event == pt.PTRACE_EVENT_EXEC:
            self._exec_event(t)
        elif event == pt.PTRACE_EVENT_STOP:
            if not t.seen_first_stop:  # auto-attached child's first stop
                t.seen_first_stop = True
                if t.forked:
                    if not self.kept(t, hooks.STOP_FIRST):
                        self._resume(t)
                else:
                    t.held = True  # resumed at the parent's fork event
            elif sig in STOP_SIGNALS:  # group stop: job control as without a tracer
                if not self.kept(t, hooks.STOP_GROUP, sig):
                    pt.listen(t.pid)
            elif not self.kept(t, hooks.STOP_INTERRUPT, sig, event):
                self._resume(t)
        elif not self.kept(t, hooks.STOP_EVENT, sig, event):
            self._resume(t)

    def _fork_event(self: Tracer, t: Tracee, event: int) -> None:
        child_pid = pt.geteventmsg(t.pid)
        child = self._forked(t, child_pid, self._clone_flags(t) if event == pt.PTRACE_EVENT_CLONE else 0)
        if not self.kept(t, hooks.STOP_EVENT, pt.SIGTRAP, event):
            self._resume(t)
        if child.held:
            child.held = False
            if not self.kept(child, hooks.STOP_FIRST):
                self._resume(child)
        else:
            fastexec.expect_first(self, child)

    def _forked(self: Tracer, t: Tracee, child_pid: int, flags: int) -> Tracee:
        """What a fork or clone (`flags`) of `t` makes of its child, before either goes on."""
        share_fs = bool(flags & CLONE_FS)
        thread = bool(flags & CLONE_THREAD)
        child = self.tracees.get(child_pid)
        if child is None:
            child = self._new_tracee(child_pid, t, share_fs)
        else:  # its first stop came before this event: adopt it now
            self._inherit(child, t, share_fs)
        child.forked = True
        child.tgid = t.tgid if thread else child_pid
        if not thread:
            self.dumpable.on_fork(t.tgid, child_pid)
            if self.dirlist.open_dirs:
                self.dirlist.on_fork(t.tgid, child_pid)
        if self.pinning.released and self.pinning.enabled:
            self.pinning.unpin(child_pid)
        for ext in t.view.extensions:
            ext.on_fork(t, child)
        return child

    def _exec_event(self: Tracer, t: Tracee) -> None:
        former = pt.geteventmsg(t.pid)
        if self.fast is not None:  # an execve the fast path carried out
            fastexec.taken(self, self.fast, former)
        if former != t.pid and former in self.tracees:  # a thread exec'd: it takes the leader's pid
            old = self.tracees.pop(former)
            t.pending_exe = old.pending_exe or t.pending_exe
        if self.fast is not None:
            self.fast.forget(t.pid)
            if former != t.pid:
                self.fast.forget(former)
                self.fast.forget_cwd(former)
                self.fast.forget_cwd(t.pid)
        self._exec_done(t, abi_of.of_program(self.abis, t) if len(self.abis) > 1 else t.abi)
        if not self.kept(t, hooks.STOP_EVENT, pt.SIGTRAP, pt.PTRACE_EVENT_EXEC):
            self._resume(t)

    def _exec_done(self: Tracer, t: Tracee, abi: Abi) -> None:
        """What an exec changes of a process: its exe, the ABI it runs (`abi`), the hooks."""
        if t.pending_exe:
            t.exe = t.pending_exe
            t.pending_exe = None
            t.loader_words = t.pending_loader
            t.pending_loader = None
        t.last_rewrite = None
        t.abi = abi
        self.dumpable.on_exec(t.tgid)
        for ext in t.view.extensions:
            ext.on_exec(t)

    def _tree_events(self: Tracer, events: list[tuple]) -> None:
        """Fork and exec events and ends the fast path resumed itself, in order (fastexec.py):
        handled as their stops are, without the resume (it forgot what fast.forget would, and
        resumes a forked child's first stop itself)."""
        for kind, pid, value, exe, words, argv0 in events:
            t = self.tracees.get(pid)
            if kind == fastexec.Q_EXIT:
                self._gone(pid, t, value)
            elif kind == fastexec.Q_FORK:
                if t is not None:
                    self._forked(t, value, words).seen_first_stop = True
            elif t is not None:
                if exe is not None:
                    fastexec.pending(t, exe, words, argv0)
                self._exec_done(t, abi_of.of_code_segment(self.abis, value, t.abi) if len(self.abis) > 1 else t.abi)

    def _clone_flags(self: Tracer, t: Tracee) -> int:
        try:
            regs = t.get_regs()
        except OSError:
            return 0
        arch = t.abi.arch
        nr = regs[arch.nr_slot]
        if nr == t.abi.names["clone3"]:
            try:
                return t.read_u64(regs[arch.arg_slots[0]])
            except OSError:
                return 0
        return regs[arch.arg_slots[0]]

    def _signal_stop(self: Tracer, t: Tracee, sig: int) -> None:
        if not t.seen_first_stop:
            t.seen_first_stop = True
        if sig == signal.SIGSTOP and t.pid == self.first_pid and not self.use_seccomp and not self._started:
            self._started = True  # the child's own SIGSTOP that starts PTRACE_SYSCALL mode
            self._resume(t, 0)
            return
        if sig == signal.SIGSYS and answer_sigsys(self, t):
            return  # a call a host seccomp policy trapped, answered by the engine
        if not self.kept(t, hooks.STOP_SIGNAL, sig):
            self._resume(t, sig)

    def _gone(self: Tracer, pid: int, t: Tracee | None, status: int) -> None:
        if t is None:
            return
        del self.tracees[pid]
        self.recently_gone.append(pid)
        t.exited = True
        t.status = status
        if self.fast is not None:
            self.fast.forget(pid)
            self.fast.forget_cwd(pid)
        if pid == t.tgid:
            self.dumpable.on_exit(pid)
            if self.dirlist.open_dirs:
                self.dirlist.on_exit(pid)
        t.fs.users -= 1
        for ext in t.view.extensions:
            ext.on_process_exit(t)
        if pid == self.first_pid:
            if status & 0x7F == 0:
                self.exit_status = (status >> 8) & 0xFF
            else:
                self.exit_status = 128 + (status & 0x7F)
            if self.plan.kill_on_exit:
                for other in list(self.tracees):
                    try:
                        os.kill(other, signal.SIGKILL)
                    except OSError:
                        pass
