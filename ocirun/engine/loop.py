"""The tracer: spawn the guest's first process, trace the whole tree, translate.

One Tracer runs one EnginePlan. Its loop waits for any stop (__WALL) and
dispatches on the kind of stop:

  seccomp stop           a trapped syscall's entry: translate, then extensions
  syscall stop (0x85)    an exit stop we asked for (or every entry/exit in the
                         no-seccomp fallback mode)
  fork/vfork/clone event a new tracee (auto-attached; its first stop is a
                         PTRACE_EVENT_STOP, held until the parent's event is seen)
  exec event             the new program runs: /proc/self/exe now names it
  group stop             job control: PTRACE_LISTEN, so SIGCONT works as usual
  signal stop            the signal is delivered as without a tracer

At a syscall entry the path arguments are translated (ocirun/engine/path/args.py),
then the syscall kind's handler runs (execve, getcwd, sockets, /proc readlink,
prctl, getdents: one module each, see _handlers), then the extensions.

Stops are kept few: a syscall gets an exit stop only when its result must be
fixed (SyscallSpec.exit), an extension asked for it, or the path cache must be
invalidated while other tracees could race the mutation. Rewritten path
pointers are not restored at exit (see ocirun/engine/syscall.py).
"""

from __future__ import annotations

import collections
import errno
import os
import sys

from ocirun.engine import abi as abi_of
from ocirun.engine import extension as hooks
from ocirun.engine import fastexec, fastpath, nest, spawn, trace
from ocirun.engine import ptrace as pt
from ocirun.engine.affinity import CpuPinning
from ocirun.engine.arch import host_arch, native_arches
from ocirun.engine.arch.i386 import fix_uname
from ocirun.engine.cwd import enter_chdir, enter_getcwd
from ocirun.engine.dirlist import DirListing
from ocirun.engine.dumpable import Dumpable
from ocirun.engine.execve import ExecPlanner
from ocirun.engine.execve_enter import enter_execve
from ocirun.engine.extension import ExtensionHost
from ocirun.engine.extensions import always_on
from ocirun.engine.faults import InternalErrors
from ocirun.engine.path.args import PathArgs
from ocirun.engine.path.errors import GuestPathError
from ocirun.engine.path.proc import ProcFiles
from ocirun.engine.path.translator import PathTranslator
from ocirun.engine.plan import EnginePlan
from ocirun.engine.scratch import ScratchDir
from ocirun.engine.sigsys import refused_at_exit
from ocirun.engine.socket import UnixSockets
from ocirun.engine.syscall import Syscall
from ocirun.engine.syscalls import Abi, SyscallSpec, load_abi
from ocirun.engine.tracee import Tracee
from ocirun.engine.tree import ProcessTree
from ocirun.engine.view import View
from ocirun.errors import OcirunError
from ocirun.util.log import log

ERESTART_MIN, ERESTART_MAX = 512, 516
_OWN_PATHS = frozenset({"execve", "execveat"})  # kinds whose handler reads the path itself


def _signed(v: int) -> int:
    return v - (1 << 64) if v & (1 << 63) else v


class Tracer(ProcessTree, ExtensionHost):
    """Runs one EnginePlan; what extensions see of it is ocirun.engine.extension.Engine."""

    def __init__(self, plan: EnginePlan):
        self.plan = plan
        self.arch = host_arch()
        # the syscall ABIs the guest may use: the host's, and i386's on x86_64 (a stop's
        # PTRACE_GET_SYSCALL_INFO arch says which); tracer.table/names are the host's
        self.abis: dict[int, Abi] = {a.audit_arch: load_abi(a) for a in native_arches(self.arch)}
        self.abi = self.abis[self.arch.audit_arch]
        self.table = self.abi.table
        self.names = self.abi.names
        self.nr_names = self.abi.nr_names
        no_seccomp_env = os.environ.get("OCIRUN_NO_SECCOMP", "") not in ("", "0")
        self.use_seccomp = plan.seccomp and not no_seccomp_env
        if not os.path.isdir(plan.rootfs):
            raise OcirunError(f"guest rootfs '{plan.rootfs}' is not a directory")
        # QEMU (-q): adds the /host-rootfs binding, returns the execve hooks (ocirun/engine/qemu/hook.py)
        qemu_foreign = qemu_host = None
        if plan.qemu:  # imported only when used (start-up time)
            from ocirun.engine.qemu.hook import hooks_for

            qemu_foreign, qemu_host = hooks_for(plan)
        self.translator = PathTranslator(plan.rootfs, plan.bindings)
        self.verbose = plan.verbose
        for b in self.translator.skipped:
            if self.verbose >= 1:
                log.warning(f"binding {b.host}:{b.guest} skipped (missing)")
        self.extensions = list(plan.extensions) + always_on()
        self.nested_extensions: list = []  # those nested `ocirun proot -0/-i/-k` runs asked for
        self.shares_inodes = self.stat_answered = self.changes_stats = self.lazy_tree = False  # attach_extensions
        self.planner = ExecPlanner(self.to_host, self.to_guest, self.arch.name,
                                   foreign=qemu_foreign, host_program=qemu_host)
        self.qemu_hooks = (qemu_foreign, qemu_host)
        self.root_view = View(self, self.translator, self.planner, list(plan.bindings))
        self.views: list[View] = [self.root_view]
        self.tracees: dict[int, Tracee] = {}
        # a guest's `kill $TracerPid` is often read after its sender exited (/bin/kill)
        self.recently_gone: collections.deque[int] = collections.deque(maxlen=64)
        self.first_pid = 0
        self.fast = None  # the compiled fast path (ocirun/engine/fastpath.py), when it runs
        self.late_rmdirs: dict[int, str] = {}  # pid -> host: an rmdir it let through, exit to come
        self.exit_status: int | None = None
        self._started = False
        self.faults = InternalErrors(plan.verbose)
        self.pinning = CpuPinning()
        self.scratch = ScratchDir()
        self.sockets = UnixSockets(self.scratch)
        self.proc = ProcFiles(self)
        self.path_args = PathArgs(self, plan.bindings)
        self.dirlist = DirListing(self.translator, plan.bindings)
        self.listed_dirs = self.dirlist.listed_dirs  # (hot path: one attribute)
        self._translate = self.path_args.translate
        self.dumpable = Dumpable()
        self._trap_syscalls()
        self._handlers = self._kind_handlers()

    def _kind_handlers(self) -> dict:
        """SyscallSpec.kind -> the core handler of its entry (one module per concern)."""
        return {
            "execve": self._enter_execve,
            "execveat": self._enter_execve,
            "getcwd": enter_getcwd,
            "chdir": enter_chdir,
            "fchdir": enter_chdir,
            "readlink": self.proc.enter_readlink,
            "sockaddr": self.sockets.enter_sockaddr,
            "sendmsg": self.sockets.enter_sendmsg,
            "sockname": self.sockets.enter_sockname,
            "accept": self.sockets.enter_sockname,
            "prctl": self._enter_prctl,
            "getdents": self.dirlist.enter_getdents,
            "rmdir": self.path_args.enter_rmdir,
            "remove": self.path_args.enter_remove,
            "uname32": _at_exit_only,
        }

    def _trap_syscalls(self) -> None:
        """The syscalls the seccomp filter stops at, in each ABI: the table's, the extensions'."""
        ext_names = {name for ext in self.extensions for name in ext.syscalls}
        for abi in self.abis.values():
            abi.ext_nrs = {abi.names[name] for name in ext_names if name in abi.names}
            abi.trapped = set(abi.table) | abi.ext_nrs
            # getdents64 is trapped only if a listing needs a fix-up (find costs nothing else)
            if not self.listed_dirs and "getdents64" not in ext_names:
                abi.trapped.discard(abi.names["getdents64"])
        self.trapped = self.abi.trapped
        self.ext_nrs = self.abi.ext_nrs

    # ------------------------------------------------------------------ paths
    def to_host(self, guest: str, cwd: str = "/", follow_last: bool = True, pid: int | None = None,
                tid: int | None = None) -> str:
        return self.translator.to_host(guest, cwd, follow_last, pid, tid)

    def to_guest(self, host: str) -> str | None:
        return self.root_view.to_guest(host)

    # ------------------------------------------------------------------- loop
    def run(self) -> int:
        if os.environ.get("OCIRUN_NO_NEST", "") in ("", "0"):
            outer_seccomp = nest.try_nest(self.plan)
            if outer_seccomp is not None:
                nest.exec_nested(self.plan, outer_seccomp, self.arch)  # does not return
        self.attach_extensions(self.root_view)
        self.fast = self.path_args.fast = fastpath.start(self)
        forwarder = spawn.SignalForwarder(self.is_or_was_guest)  # no signal is lost while the guest starts
        try:
            spawn.spawn(self)
        except BaseException:
            forwarder.stop()
            raise
        forwarder.start(self.first_pid)
        fastexec.started(self)
        self.pinning.start(self.guest_pids)
        try:
            self._loop()
        finally:
            self.pinning.wake()  # the helper threads end while the rest is put away
            forwarder.wake()
            try:
                fastpath.report(self, self.fast)
                for ext in self.extensions + self.nested_extensions:
                    ext.detach(self)
                self.scratch.cleanup()
                for view in self.views:
                    view.translator.close()
            finally:
                self.pinning.stop()
                forwarder.stop()
        return self.exit_status if self.exit_status is not None else 0

    def _loop(self) -> None:
        tracees = self.tracees
        fast = self.fast
        waitpid = fast.pump if fast is not None else lambda: pt.waitpid(-1, pt.WALL)
        while tracees:
            if fast is not None and len(self.views) > 1:  # a nested root: Python sees every stop
                fastpath.stop(self)
                fast = None
                waitpid = lambda: pt.waitpid(-1, pt.WALL)  # noqa: E731
            pid, status = waitpid()
            if pid < 0:
                if pid == -errno.EINTR:
                    continue
                break  # ECHILD: nothing left
            t = tracees.get(pid)
            if status & 0x7F == 0x7F:  # stopped
                sig = (status >> 8) & 0xFF
                event = status >> 16
                if t is None:
                    t = self._new_tracee(pid, None)
                if sig == pt.SYSGOOD_TRAP:
                    self._syscall_stop(t)
                elif event == pt.PTRACE_EVENT_SECCOMP:
                    self._seccomp_stop(t)
                elif event:
                    self._event_stop(t, event, sig)
                else:
                    self._signal_stop(t, sig)
            else:
                self._gone(pid, t, status)

    def _resume(self, t: Tracee, sig: int = 0) -> None:
        req = t.resume_request
        if req:
            r = pt.resume(req, t.pid, sig)
        elif not self.use_seccomp or (t.sc is not None and t.sc.exit_wanted):
            r = pt.syscall(t.pid, sig)
        else:
            r = pt.cont(t.pid, sig)
        if r == -1 and self.verbose >= 3:
            print(f"ocirun: resume {t.pid} failed", file=sys.stderr)

    def resume(self, t: Tracee, sig: int = 0) -> None:
        """Engine API: let a tracee an extension kept stopped go on, delivering `sig`: held at
        a syscall entry (Syscall.hold: the syscall skipped) or kept in a stop (on_stop)."""
        if t.parked:
            t.parked = False
            if t.sc is not None and t.sc.skipped and self.use_seccomp:
                t.sc = None
        if t.entry_deferred:  # no-seccomp mode: the entry was kept before the core's work
            t.entry_deferred = False
            self._syscall_entry(t)
            if t.parked:
                return
        self._resume(t, sig)

    def guest_pids(self) -> list[int]:
        """The guest's processes, for another thread: the tracees, and the children the
        fast path saw forked that the loop has not been told of yet."""
        return list(self.tracees) + fastexec.born(self)

    def every_stop_in_python(self) -> None:
        """Engine API: the compiled fast path finishes no stop from now on."""
        fastpath.stop(self)

    def tracee(self, pid: int) -> Tracee | None:
        """Engine API: the traced thread `pid`, if it is one."""
        return self.tracees.get(pid)

    def is_or_was_guest(self, pid: int) -> bool:
        """Whether a signal's sender is a guest process, also one that has just exited: the
        forwarding thread reads a signal after the main loop may have reaped its sender, or
        before it has been told of a child the fast path saw forked."""
        return pid in self.tracees or pid in self.recently_gone or pid in fastexec.born(self)

    # --------------------------------------------------------------- syscalls
    def _seccomp_stop(self, t: Tracee) -> None:
        try:
            fast = self.fast
            info = pt.last_info() if fast is not None and fast.took_info(t.pid) else pt.syscall_info(t.pid)
        except OSError:
            return  # killed meanwhile
        if t.sc is None or t.sc.chained_nr != info.nr:  # else: a chained call, its exit comes back
            try:
                self._enter(t, info)
            except Exception as exc:  # a bug here must not take the guest down
                self.faults.handle(t, exc)
        if not t.parked:
            self._resume(t)


    def _syscall_stop(self, t: Tracee) -> None:
        try:
            info = pt.syscall_info(t.pid)
        except OSError:
            return
        op = info.op
        if op == pt.SYSCALL_INFO_ENTRY and t.sc is not None and t.sc.chained_nr == info.nr:
            pass  # a syscall an extension chained (Syscall.chain): its exit comes to the same object
        elif op == pt.SYSCALL_INFO_ENTRY:
            # seccomp mode: resumed with PTRACE_SYSCALL from another stop, the seccomp stop follows
            if self.kept(t, hooks.STOP_ENTRY):  # before any translation: the guest's own arguments
                t.entry_deferred = not self.use_seccomp
                return
            if not self.use_seccomp:
                self._syscall_entry(t, info)
        elif op == pt.SYSCALL_INFO_EXIT:
            sc = t.sc
            t.sc = None
            if sc is None and self.late_rmdirs:
                fastpath.late_rmdir(self, t.pid, _signed(info.nr))
            if sc is not None:
                try:
                    self._exit(t, sc, _signed(info.nr))
                except Exception as exc:
                    self.faults.handle(t, exc)
                if sc.chained_nr >= 0:
                    t.sc = sc
                elif self.kept(t, hooks.STOP_EXIT, sc=sc):
                    return
            elif self.kept(t, hooks.STOP_EXIT):
                return
        elif op == pt.SYSCALL_INFO_SECCOMP:  # seccomp stop reported as a syscall stop
            self._enter(t, info)
        if not t.parked:
            self._resume(t)

    def _syscall_entry(self, t: Tracee, info: pt.SyscallInfo | None = None) -> None:
        """A syscall-enter stop of the no-seccomp mode: the core's work if the syscall is trapped."""
        if info is None:
            try:
                info = pt.syscall_info(t.pid)
            except OSError:
                return
        nr = info.nr
        abi = self.abis.get(info.arch)
        if abi is not None and nr in abi.trapped:
            try:
                self._enter(t, info)
            except Exception as exc:
                self.faults.handle(t, exc)
        else:
            t.sc = None
            if self.verbose >= 3 and abi is not None:
                trace.trace_other(t, abi.nr_names.get(info.nr, str(info.nr)))

    def _enter(self, t: Tracee, info: pt.SyscallInfo, trapped: bool = False) -> Syscall | None:
        """A trapped syscall's entry: the core's path translation and handler, then extensions.
        trapped: the call's SIGSYS stop (sigsys.py): answered as at a seccomp stop."""
        nr = info.nr
        stop = abi_of.of_stop(self.abis, self.abi, info)  # x86_64 or i386 (ocirun/engine/abi.py)
        if stop is None:
            t.sc = None
            return None
        abi, args = stop
        t.abi = abi
        last = t.last_rewrite
        if last is not None:
            t.last_rewrite = None
            if last[0] == nr:
                self._unrewrite(t, last[1], args)
        call_of = abi_of.direct_call(t, abi, nr, args)  # i386's socketcall: the call it carries
        if call_of is None:
            t.sc = None
            return None
        call, args, spec, mux = call_of
        sc = Syscall(t, call, spec.name if spec else abi.nr_names.get(call, str(call)), spec, args, info.sp,
                     self.use_seccomp or trapped)
        sc.mux = mux
        t.sc = sc
        if not self.use_seccomp:
            sc.exit_wanted = True  # the exit stop comes anyway
        if spec is not None:
            self._paths_and_handler(t, sc, spec)
            if spec.invalidate and not sc.skipped:
                self.path_args.invalidate(sc, spec)
            if self.listed_dirs and spec.follow_open and not sc.skipped and t.view is self.root_view:
                self.dirlist.note_open(sc, spec)
            if sc.rewritten is not None:
                t.last_rewrite = (nr, sc.rewritten)
        if not sc.skipped:
            for ext in t.view.extensions:
                ext.on_enter(t, sc)
                if sc.skipped:
                    break
        if self.verbose >= 2:
            trace.trace_call(t, sc)
        if sc.skipped and self.use_seccomp:
            t.sc = None
        elif spec is not None and spec.exit:
            sc.exit_wanted = True
        if not sc.exit_wanted:
            t.sc = None
        return sc

    def _paths_and_handler(self, t: Tracee, sc: Syscall, spec: SyscallSpec, again: bool = False) -> None:
        """The core's part of an entry: translate the path arguments, run the kind's handler.
        A directory the real user may not search stops the lookup with EACCES: an extension
        that lends the missing bit (-0, as PRoot does) gets one chance before the guest sees it."""
        try:
            if spec.kind not in _OWN_PATHS:
                for pa in spec.paths:
                    self._translate(t, sc, pa)
            if spec.kind and not sc.skipped:
                self._handlers[spec.kind](t, sc)
        except GuestPathError as exc:
            if exc.errno == errno.EACCES and not again and self._lend_search(t, exc.filename):
                self._paths_and_handler(t, sc, spec, True)
                return
            sc.skip(-(exc.errno or errno.ENOENT))
        except OSError as exc:  # the guest passed a bad pointer
            if exc.errno != errno.EFAULT and exc.errno != errno.ESRCH:
                raise
            if not sc.skipped:
                sc.skip(-errno.EFAULT)

    def _lend_search(self, t: Tracee, guest: str | None) -> bool:
        """Ask the extensions to make guest path `guest` reachable for the real user."""
        return bool(guest) and any(ext.lend_search(t, guest) for ext in t.view.extensions)

    @staticmethod
    def _unrewrite(t: Tracee, saved: dict[int, tuple[int, int]], args: list[int]) -> None:
        """A restarted syscall re-enters with our scratch pointers: give it back the guest's."""
        for i, (scratch, orig) in saved.items():
            if args[i] == scratch:
                args[i] = orig
                t.abi.arch.regs.set_arg(t.pid, i, orig)

    def _exit(self, t: Tracee, sc: Syscall, result: int) -> None:
        sc.at_exit = True
        sc.chained_nr = -1
        if sc.skipped:  # no-seccomp mode: the kernel ran nothing, the result is ours
            sc.set_result(sc.skip_result)
            return
        sc._result = result
        if -ERESTART_MAX <= result <= -ERESTART_MIN:
            return  # the syscall will be restarted (and re-trapped)
        t.last_rewrite = None
        if not sc.seccomp_mode and refused_at_exit(t, sc, result):
            return  # a host filter's SIGSYS follows (sigsys.py)
        for ext in reversed(t.view.extensions):
            ext.on_exit(t, sc)
        spec = sc.spec
        if spec is None:
            return
        if spec.invalidate and result >= 0:
            self.path_args.invalidate(sc, spec)
        if spec.kind == "sockname" or spec.kind == "accept":
            if result >= 0:
                self.sockets.fix_sockname(t, sc)
        elif spec.kind == "getdents":
            if result == 0:
                self.dirlist.fix_getdents(t, sc)
        elif spec.kind == "uname32":
            fix_uname(t, sc)
        elif "listed_dir" in sc.notes and result >= 0:
            self.dirlist.opened(t, sc, result)

    # ----------------------------------------------------------- kind handlers
    def _enter_execve(self, t: Tracee, sc: Syscall) -> None:
        enter_execve(self, t, sc)

    def _enter_prctl(self, t: Tracee, sc: Syscall) -> None:
        if not self.dumpable.enter_prctl(t, sc):
            nest.enter_nest(self, t, sc)



def _at_exit_only(t: Tracee, sc: Syscall) -> None:
    """A kind whose work is at the exit stop (SyscallSpec.exit)."""
