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

Stops are kept few: a syscall gets an exit stop only when its result must be
fixed (SyscallSpec.exit), an extension asked for it, or the path cache must be
invalidated while other tracees could race the mutation. Rewritten path
pointers are not restored at exit (see ocirun/engine/syscall.py).
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import signal
import stat
import struct
import sys
import tempfile
import threading

from ocirun.engine import ptrace as pt
from ocirun.engine import seccomp, syscalls
from ocirun.engine.affinity import CpuPinning
from ocirun.engine.execve import ExecPlanner
from ocirun.engine.path.errors import GuestPathError
from ocirun.engine.path.translator import PathTranslator, is_proc_magic_link
from ocirun.engine.plan import Binding, EnginePlan
from ocirun.engine.syscall import Syscall
from ocirun.engine.syscalls import (
    AT_EMPTY_PATH,
    AT_FDCWD,
    AT_REMOVEDIR,
    FLAG_FOLLOW,
    FLAG_NOFOLLOW,
    FOLLOW,
    O_CREAT,
    O_EXCL,
    O_NOFOLLOW,
    OPEN,
    OPENAT2,
    PathArg,
)
from ocirun.engine.tracee import FsState, Tracee
from ocirun.errors import OcirunError

ENC = "surrogateescape"
NEST_MAGIC = 0x4F435255  # prctl option of a nested ocirun ("OCRU"; unknown to the kernel: EINVAL)
PR_GET_DUMPABLE, PR_SET_DUMPABLE = 3, 4
STOP_SIGNALS = {signal.SIGSTOP, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU}
FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
CLONE_FS = 0x200
CLONE_THREAD = 0x10000
AF_UNIX = 1
SUN_PATH_MAX = 108
ERESTART_MIN, ERESTART_MAX = 512, 516
_UNLINKS = frozenset({"unlink", "unlinkat"})
_DIRENT64_HEAD = 19  # d_ino u64, d_off s64, d_reclen u16, d_type u8, then the name
_OWN_PATHS = frozenset({"execve", "execveat"})  # kinds whose handler reads the path itself
_PROC_EXE = re.compile(r"^/proc/(self|\d+)(?:/task/(\d+))?/exe$")
_PROC_CMDLINE = re.compile(r"^/proc/(self|\d+)(?:/task/\d+)?/cmdline$")
_PROC_ROOT = re.compile(r"^/proc/(self|\d+)(?:/task/\d+)?/root(/.*)?$")


def _signed(v: int) -> int:
    return v - (1 << 64) if v & (1 << 63) else v


class View:
    """What a tracee sees: a translator and an execve planner. Every tracee starts
    in the plan's view; a nested `ocirun proot` inside the guest hands its own
    rootfs and bindings to this tracer (see _enter_nest) and its process tree
    then gets a view composed of both."""

    __slots__ = ("engine", "translator", "planner", "bindings")

    def __init__(self, engine: Tracer, translator: PathTranslator, planner: ExecPlanner,
                 bindings: list[Binding]):
        self.engine = engine
        self.translator = translator
        self.planner = planner
        self.bindings = bindings  # host paths are real host paths

    def to_host(self, guest: str, cwd: str = "/", follow_last: bool = True) -> str:
        return self.translator.to_host(guest, cwd, follow_last)

    def to_guest(self, host: str) -> str | None:
        engine = self.engine
        if engine._aliases and host.startswith(engine._alias_dir or "\0"):
            host = engine._unalias(host)
        return self.translator.to_guest(host)


class Tracer:
    def __init__(self, plan: EnginePlan):
        self.plan = plan
        self.arch = pt.host_arch()
        self.table = syscalls.load(self.arch.name)
        self.names = syscalls.names(self.arch.name)
        self.nr_names = {v: k for k, v in self.names.items()}
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
                print(f"ocirun: warning: binding {b.host}:{b.guest} skipped (missing)", file=sys.stderr)
        self.extensions = list(plan.extensions)
        self.planner = ExecPlanner(self.to_host, self.to_guest, self.arch.name,
                                   foreign=qemu_foreign, host_program=qemu_host)
        self._qemu_hooks = (qemu_foreign, qemu_host)
        self.root_view = View(self, self.translator, self.planner, list(plan.bindings))
        # fast path (_translate): names that a binding or its glue directories use
        self._bind_names = {".", ".."} | self._binding_components(plan.bindings)
        self._lean = not self.extensions
        self.views: list[View] = [self.root_view]
        self.tracees: dict[int, Tracee] = {}
        self.first_pid = 0
        self.exit_status: int | None = None
        self.execve_nr = self.names["execve"]
        self._started = False
        self.pinning = CpuPinning()
        self._alias_dir: str | None = None
        self._aliases: dict[str, str] = {}  # alias dir -> host dir
        self._scratch_files: set[str] = set()  # in _alias_dir: /proc/PID/cmdline copies
        # tgid -> the PR_SET_DUMPABLE value the guest asked for, when not 1 (never run:
        # a non-dumpable process refuses process_vm_readv to an unprivileged tracer)
        self.dumpable: dict[int, int] = {}
        ext_nrs: set[int] = set()
        for ext in self.extensions:
            for name in ext.syscalls:
                if name in self.names:
                    ext_nrs.add(self.names[name])
        # host dir -> guest dir: rootfs directories where a binding adds a name the
        # directory lacks; getdents64 is trapped only if there is one (find costs nothing else)
        self.listed_dirs = self._dirs_missing_bindings(plan.bindings)
        self.open_dirs: dict[tuple[int, int], tuple[str, str, list[str] | None]] = {}
        self.trapped = set(self.table) | ext_nrs
        if not self.listed_dirs and "getdents64" not in {e for x in self.extensions for e in x.syscalls}:
            self.trapped.discard(self.names["getdents64"])
        self.ext_nrs = ext_nrs
        self._handlers = {
            "execve": self._enter_execve,
            "execveat": self._enter_execve,
            "getcwd": self._enter_getcwd,
            "chdir": self._enter_chdir,
            "fchdir": self._enter_chdir,
            "readlink": self._enter_readlink,
            "sockaddr": self._enter_sockaddr,
            "sendmsg": self._enter_sendmsg,
            "sockname": self._enter_sockname,
            "accept": self._enter_accept,
            "prctl": self._enter_prctl,
            "getdents": self._enter_getdents,
        }

    def _binding_components(self, bindings: list[Binding]) -> set[str]:
        names: set[str] = set()
        for b in bindings:
            paths = [b.guest]
            try:
                paths.append(self.translator.canonical(b.guest, "/", b.deref_guest))
            except (GuestPathError, OSError):
                pass
            for p in paths:
                names.update(c for c in p.split("/") if c)
        return names

    def _dirs_missing_bindings(self, bindings: list[Binding]) -> dict[str, str]:
        """host dir -> guest dir of the existing rootfs directories in which a binding
        (or the glue directory leading to one) names an entry the directory lacks."""
        out: dict[str, str] = {}
        tr = self.translator
        for b in bindings:
            try:
                guest = tr.canonical(b.guest, "/", b.deref_guest)
            except (GuestPathError, OSError):
                continue
            while guest != "/":
                guest = guest.rsplit("/", 1)[0] or "/"
                try:
                    host = tr.to_host(guest, "/", True)
                except (GuestPathError, OSError):
                    continue
                if any(not os.path.lexists(os.path.join(host, n)) for n in tr.bound_children(guest)):
                    out[host.rstrip("/") or "/"] = guest
        return out

    # ------------------------------------------------------------------ paths
    def to_host(self, guest: str, cwd: str = "/", follow_last: bool = True) -> str:
        return self.translator.to_host(guest, cwd, follow_last)

    def to_guest(self, host: str) -> str | None:
        if self._aliases and host.startswith(self._alias_dir or "\0"):
            host = self._unalias(host)
        return self.translator.to_guest(host)

    # ------------------------------------------------------------------ spawn
    def _resolve_command(self, argv0: str, env: dict[str, str], cwd: str, direct: bool = False) -> str:
        """The guest path execve gets for argv[0]: PATH lookup in the guest, with
        the shell's 126/127 errors reported by ocirun before anything runs.
        direct: this process already sees the guest (nested): no translation."""
        if "/" in argv0:
            candidates = [argv0]
        else:
            path = env.get("PATH", "/usr/local/bin:/usr/bin:/bin")
            candidates = [(d or ".").rstrip("/") + "/" + argv0 for d in path.split(":")]
        found_noexec = None
        for cand in candidates:
            try:
                host = cand if direct else self.to_host(cand, cwd, True)
            except GuestPathError:
                continue
            if os.path.isfile(host):
                if os.access(host, os.X_OK):
                    return cand
                found_noexec = found_noexec or cand
            elif os.path.isdir(host) and "/" in argv0:
                raise OcirunError(f"{argv0}: is a directory in the guest", 126)
        if found_noexec:
            raise OcirunError(f"{found_noexec}: permission denied (not executable in the guest)", 126)
        raise OcirunError(f"{argv0}: command not found in the guest", 127)

    def spawn(self) -> int:
        plan = self.plan
        env = dict(os.environ if plan.env is None else plan.env)
        argv = list(plan.argv) or ["/bin/sh"]
        try:
            guest_cwd = self.translator.canonical(plan.cwd or "/", "/", True)
            host_cwd = self.to_host(guest_cwd, "/", True)
        except GuestPathError as exc:
            raise OcirunError(f"working directory '{plan.cwd}' does not exist in the guest: {exc.strerror}") from None
        if not os.path.isdir(host_cwd):
            raise OcirunError(f"working directory '{plan.cwd}' is not a directory in the guest")
        prog = self._resolve_command(argv[0], env, guest_cwd)
        self.pinning.pin()
        allow = {nr: spec.bpf_allow for nr, spec in self.table.items() if spec.bpf_allow and nr not in self.ext_nrs}
        prepared = seccomp.prepare(seccomp.build_filter(self.arch, self.trapped, allow)) if self.use_seccomp else None
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: becomes the guest's first process
            try:
                os.close(w)
                _child_reset_signals()
                if self.pinning.released:
                    os.sched_setaffinity(0, self.pinning.allowed)
                if os.read(r, 1) != b"g":
                    os._exit(125)
                os.close(r)
                os.chdir(host_cwd)
                if prepared is not None:
                    e = seccomp.install(prepared)
                    if e:
                        os.write(2, f"ocirun: cannot install the seccomp filter: {os.strerror(e)}\n".encode())
                        os._exit(125)
                else:
                    os.kill(os.getpid(), signal.SIGSTOP)  # first stop: PTRACE_SYSCALL from here on
                os.execve(prog, argv, env)
            except OSError as exc:
                code = 127 if exc.errno in (errno.ENOENT, errno.ENOTDIR) else 126
                os.write(2, f"ocirun: {argv[0]}: {exc.strerror}\n".encode())
                os._exit(code)
            except BaseException:  # noqa: BLE001 - never return into the parent's code
                os._exit(125)
            os._exit(125)
        os.close(r)
        try:
            pt.seize(pid)
        except OSError as exc:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            os.close(w)
            raise OcirunError(
                f"ptrace is not permitted here ({os.strerror(exc.errno or 1)}): the engine needs ptrace "
                "(check kernel.yama.ptrace_scope or a container's seccomp profile)"
            ) from None
        t = Tracee(pid=pid, engine=self, exe=prog, view=self.root_view)
        t.seen_first_stop = True
        t.fs.cwd = guest_cwd
        t.fs.host_cwd = os.path.realpath(host_cwd)
        self.tracees[pid] = t
        self.first_pid = pid
        os.write(w, b"g")
        os.close(w)
        return pid

    # ---------------------------------------------------------------- nesting
    def _try_nest(self) -> bool:
        """Inside an ocirun guest, ask the outer tracer to show this process our
        rootfs and bindings; False on a plain kernel (EINVAL) or outside ocirun."""
        plan = self.plan
        fields = [os.path.abspath(plan.rootfs)]
        for b in plan.bindings:
            fields += [b.host, b.guest, "1" if b.deref_guest else "0"]
        data = "\0".join(fields).encode("utf-8", ENC)  # rootfs, then (host, guest, deref) triples
        buf = ctypes.create_string_buffer(data, len(data))
        return pt.libc.prctl(NEST_MAGIC, ctypes.addressof(buf), len(data), 0, 0) == 0

    def _exec_nested(self) -> None:
        """Become the guest command: the outer ocirun translates it in our view."""
        plan = self.plan
        if plan.extensions:
            names = ", ".join(e.name for e in plan.extensions)
            print(f"ocirun: warning: nested in another ocirun: extensions ({names}) are not applied",
                  file=sys.stderr)
        env = dict(os.environ if plan.env is None else plan.env)
        argv = list(plan.argv) or ["/bin/sh"]
        try:
            os.chdir(plan.cwd or "/")
        except OSError as exc:
            raise OcirunError(f"working directory '{plan.cwd}' does not exist in the guest: {exc.strerror}") from None
        prog = self._resolve_command(argv[0], env, plan.cwd or "/", direct=True)
        sys.stdout.flush()
        sys.stderr.flush()
        _child_reset_signals(pdeathsig=False)
        try:
            os.execve(prog, argv, env)
        except OSError as exc:
            code = 127 if exc.errno in (errno.ENOENT, errno.ENOTDIR) else 126
            raise OcirunError(f"{argv[0]}: {exc.strerror}", code) from None

    # ------------------------------------------------------------------- loop
    def run(self) -> int:
        if os.environ.get("OCIRUN_NO_NEST", "") in ("", "0") and self._try_nest():
            self._exec_nested()  # does not return
        for ext in self.extensions:
            ext.attach(self)
        self.spawn()
        forwarder = _SignalForwarder(self.first_pid)
        self.pinning.start(lambda: list(self.tracees))
        try:
            self._loop()
        finally:
            self.pinning.stop()
            forwarder.stop()
            for ext in self.extensions:
                ext.detach(self)
            self._cleanup_aliases()
            for view in self.views:
                view.translator.close()
        return self.exit_status if self.exit_status is not None else 0

    def _loop(self) -> None:
        tracees = self.tracees
        waitpid = pt.waitpid
        while tracees:
            pid, status = waitpid(-1, pt.WALL)
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

    # ---------------------------------------------------------------- resume
    def _resume(self, t: Tracee, sig: int = 0) -> None:
        if not self.use_seccomp or (t.sc is not None and t.sc.exit_wanted):
            r = pt.syscall(t.pid, sig)
        else:
            r = pt.cont(t.pid, sig)
        if r == -1 and self.verbose >= 3:
            print(f"ocirun: resume {t.pid} failed", file=sys.stderr)

    # ----------------------------------------------------------- process tree
    def _new_tracee(self, pid: int, parent: Tracee | None, share_fs: bool = False) -> Tracee:
        t = Tracee(pid=pid, engine=self, parent=parent, view=self.root_view)
        if parent is not None:
            t.view = parent.view
            t.exe = parent.exe
            t.loader_words = parent.loader_words
            t.data = dict(parent.data)
            if share_fs:
                t.fs = parent.fs
                parent.fs.users += 1
            else:
                t.fs = FsState(cwd=parent.fs.cwd, host_cwd=parent.fs.host_cwd)
        self.tracees[pid] = t
        return t

    def _event_stop(self, t: Tracee, event: int, sig: int) -> None:
        if event in (pt.PTRACE_EVENT_FORK, pt.PTRACE_EVENT_VFORK, pt.PTRACE_EVENT_CLONE):
            child_pid = pt.geteventmsg(t.pid)
            share_fs = False
            thread = False
            if event == pt.PTRACE_EVENT_CLONE:
                flags = self._clone_flags(t)
                share_fs = bool(flags & CLONE_FS)
                thread = bool(flags & CLONE_THREAD)
            child = self.tracees.get(child_pid)
            if child is None:
                child = self._new_tracee(child_pid, t, share_fs)
            else:  # its first stop came before this event: adopt it now
                child.parent = t
                child.view = t.view
                child.exe = t.exe
                child.loader_words = t.loader_words
                child.data = dict(t.data)
                child.fs = t.fs if share_fs else FsState(cwd=t.fs.cwd, host_cwd=t.fs.host_cwd)
                if share_fs:
                    t.fs.users += 1
            child.forked = True
            child.tgid = t.tgid if thread else child_pid
            if not thread and t.tgid in self.dumpable:  # the kernel copies the mm's flags
                self.dumpable[child_pid] = self.dumpable[t.tgid]
            if not thread and self.open_dirs:
                for (tgid, fd), state in list(self.open_dirs.items()):
                    if tgid == t.tgid:
                        self.open_dirs[(child_pid, fd)] = state
            if self.pinning.released and self.pinning.enabled:
                self.pinning.unpin(child_pid)
            for ext in self.extensions:
                ext.on_fork(t, child)
            if child.held:
                child.held = False
                self._resume(child)
            self._resume(t)
        elif event == pt.PTRACE_EVENT_EXEC:
            former = pt.geteventmsg(t.pid)
            if former != t.pid and former in self.tracees:  # a thread exec'd: it takes the leader's pid
                old = self.tracees.pop(former)
                t.pending_exe = old.pending_exe or t.pending_exe
            if t.pending_exe:
                t.exe = t.pending_exe
                t.pending_exe = None
                t.loader_words = t.pending_loader
                t.pending_loader = None
            t.last_rewrite = None
            self.dumpable.pop(t.tgid, None)  # exec of a non-setuid program: dumpable again
            for ext in self.extensions:
                ext.on_exec(t)
            self._resume(t)
        elif event == pt.PTRACE_EVENT_STOP:
            if not t.seen_first_stop:  # auto-attached child's first stop
                t.seen_first_stop = True
                if t.forked:
                    self._resume(t)
                else:
                    t.held = True  # resumed at the parent's fork event
            elif sig in STOP_SIGNALS:  # group stop: job control as without a tracer
                pt.listen(t.pid)
            else:
                self._resume(t)
        else:
            self._resume(t)

    def _clone_flags(self, t: Tracee) -> int:
        try:
            regs = t.get_regs()
        except OSError:
            return 0
        nr = regs[self.arch.nr_slot]
        if nr == self.names["clone3"]:
            try:
                return t.read_u64(regs[self.arch.arg_slots[0]])
            except OSError:
                return 0
        return regs[self.arch.arg_slots[0]]

    def _signal_stop(self, t: Tracee, sig: int) -> None:
        if not t.seen_first_stop:
            t.seen_first_stop = True
        if sig == signal.SIGSTOP and t.pid == self.first_pid and not self.use_seccomp and not self._started:
            self._started = True  # the child's own SIGSTOP that starts PTRACE_SYSCALL mode
            self._resume(t, 0)
            return
        self._resume(t, sig)

    def _gone(self, pid: int, t: Tracee | None, status: int) -> None:
        if t is None:
            return
        del self.tracees[pid]
        t.exited = True
        if pid == t.tgid:
            self.dumpable.pop(pid, None)
            if self.open_dirs:
                for key in [k for k in self.open_dirs if k[0] == pid]:
                    del self.open_dirs[key]
        t.fs.users -= 1
        for ext in self.extensions:
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

    # --------------------------------------------------------------- syscalls
    def _seccomp_stop(self, t: Tracee) -> None:
        try:
            info = pt.syscall_info(t.pid)
        except OSError:
            return  # killed meanwhile
        try:
            self._enter(t, info)
        except Exception as exc:  # noqa: BLE001 - a bug here must not take the guest down
            self._internal_error(t, exc)
        self._resume(t)

    def _internal_error(self, t: Tracee, exc: BaseException) -> None:
        """Report once, fail the syscall with EIO, go on."""
        sc = t.sc
        name = sc.name if sc is not None else "?"
        if not getattr(self, "_reported", False) or self.verbose >= 1:
            self._reported = True
            print(f"ocirun: internal error at {name} of pid {t.pid}: {type(exc).__name__}: {exc}", file=sys.stderr)
        if sc is not None and not sc.at_exit and not sc.skipped:
            try:
                sc.skip(-errno.EIO)
            except OSError:
                pass
        t.sc = None

    def _syscall_stop(self, t: Tracee) -> None:
        try:
            info = pt.syscall_info(t.pid)
        except OSError:
            return
        op = info.op
        if op == pt.SYSCALL_INFO_ENTRY and self.use_seccomp:
            pass  # resumed with PTRACE_SYSCALL from another stop: the seccomp stop follows
        elif op == pt.SYSCALL_INFO_ENTRY:
            nr = info.nr
            if nr in self.trapped:
                try:
                    self._enter(t, info)
                except Exception as exc:  # noqa: BLE001
                    self._internal_error(t, exc)
            else:
                t.sc = None
                if self.verbose >= 3:
                    self._trace_other(t, info)
        elif op == pt.SYSCALL_INFO_EXIT:
            sc = t.sc
            t.sc = None
            if sc is not None:
                try:
                    self._exit(t, sc, _signed(info.nr))
                except Exception as exc:  # noqa: BLE001
                    self._internal_error(t, exc)
        elif op == pt.SYSCALL_INFO_SECCOMP:  # seccomp stop reported as a syscall stop
            self._enter(t, info)
        self._resume(t)

    def _enter(self, t: Tracee, info: pt.SyscallInfo) -> None:
        nr = info.nr
        args = list(info.args)
        spec = self.table.get(nr)
        sc = Syscall(t, nr, spec.name if spec else self.nr_names.get(nr, str(nr)), spec, args, info.sp,
                     self.use_seccomp)
        t.sc = sc
        if not self.use_seccomp:
            sc.exit_wanted = True  # the exit stop comes anyway
        last = t.last_rewrite
        if last is not None:
            # a restarted syscall re-enters with our scratch pointers: give it back the guest's
            lnr, saved = last
            t.last_rewrite = None
            if lnr == nr:
                for i, (scratch, orig) in saved.items():
                    if args[i] == scratch:
                        args[i] = orig
                        pt.poke_user(t.pid, self.arch.arg_slots[i], orig)
                sc.orig_args = tuple(args)
        if spec is not None:
            try:
                if spec.kind not in _OWN_PATHS:
                    for pa in spec.paths:
                        self._translate(t, sc, pa)
                if spec.kind and not sc.skipped:
                    self._handlers[spec.kind](t, sc)
            except GuestPathError as exc:
                sc.skip(-(exc.errno or errno.ENOENT))
            except OSError as exc:  # the guest passed a bad pointer
                if exc.errno == errno.EFAULT or exc.errno == errno.ESRCH:
                    if not sc.skipped:
                        sc.skip(-errno.EFAULT)
                else:
                    raise
            if spec.invalidate and not sc.skipped:
                self._invalidate(sc, spec)
            if self.listed_dirs and spec.follow_open and not sc.skipped and t.view is self.root_view:
                self._note_dir_open(sc, spec)
            if sc.rewritten is not None:
                t.last_rewrite = (nr, sc.rewritten)
        if not sc.skipped:
            for ext in self.extensions:
                ext.on_enter(t, sc)
                if sc.skipped:
                    break
        if self.verbose >= 2:
            self._trace(t, sc)
        if sc.skipped and self.use_seccomp:
            t.sc = None
        elif spec is not None and spec.exit:
            sc.exit_wanted = True
        if not sc.exit_wanted:
            t.sc = None

    def _exit(self, t: Tracee, sc: Syscall, result: int) -> None:
        sc.at_exit = True
        if sc.skipped:  # no-seccomp mode: the kernel ran nothing, the result is ours
            sc.set_result(sc.skip_result)
            return
        sc._result = result
        if -ERESTART_MAX <= result <= -ERESTART_MIN:
            return  # the syscall will be restarted (and re-trapped)
        t.last_rewrite = None
        for ext in reversed(self.extensions):
            ext.on_exit(t, sc)
        spec = sc.spec
        if spec is None:
            return
        if spec.invalidate and result >= 0:
            self._invalidate(sc, spec)
        if spec.kind == "sockname" or spec.kind == "accept":
            if result >= 0:
                self._fix_sockname(t, sc)
        elif spec.kind == "getdents":
            if result == 0:
                self._fix_getdents(t, sc)
        elif "listed_dir" in sc.notes and result >= 0:
            self.open_dirs[(t.tgid, result)] = (*sc.notes["listed_dir"], None)

    def _invalidate(self, sc: Syscall, spec) -> None:
        if spec.name in _UNLINKS and not sc.at_exit and self._unlinks_plain_file(sc, spec):
            self._invalidate_paths(sc, spec)  # at entry only: no exit stop for rm of files
            return
        self._invalidate_paths(sc, spec)
        if not sc.at_exit and len(self.tracees) > 1:
            sc.exit_wanted = True  # another tracee could re-cache the old state meanwhile

    def _invalidate_paths(self, sc: Syscall, spec) -> None:
        for idx in spec.invalidate:
            pa = spec.paths[idx]
            host = sc.host_paths.get(pa.arg)
            if host:
                for view in self.views:
                    view.translator.invalidate(host)

    @staticmethod
    def _unlinks_plain_file(sc: Syscall, spec) -> bool:
        """unlink of a regular file: invalidating at the entry is enough (a lookup
        racing the unlink may re-cache a file entry, which resolves to the same
        host path as none), so no exit stop."""
        if spec.name == "unlinkat" and sc.args[2] & AT_REMOVEDIR:
            return False
        host = sc.host_paths.get(spec.paths[0].arg)
        if not host:
            return False
        try:
            mode = os.lstat(host).st_mode
        except OSError:
            return True  # nothing there: the unlink fails, nothing changes
        return not (stat.S_ISLNK(mode) or stat.S_ISDIR(mode))

    # ------------------------------------------------------ path translation
    def _follow(self, sc: Syscall, pa: PathArg) -> bool:
        mode = pa.follow
        if mode == FOLLOW:
            return True
        if mode == FLAG_NOFOLLOW:
            return not (sc.args[pa.flag_arg] & pa.flag_mask)
        if mode == FLAG_FOLLOW:
            return bool(sc.args[pa.flag_arg] & pa.flag_mask)
        if mode == OPEN:
            flags = sc.args[pa.flag_arg]
            return not (flags & O_NOFOLLOW or (flags & (O_CREAT | O_EXCL)) == (O_CREAT | O_EXCL))
        if mode == OPENAT2:
            try:
                flags = sc.tracee.read_u64(sc.args[pa.flag_arg])
            except OSError:
                return True
            return not (flags & O_NOFOLLOW or (flags & (O_CREAT | O_EXCL)) == (O_CREAT | O_EXCL))
        return False

    def _base_dir(self, t: Tracee, sc: Syscall, pa: PathArg) -> str | None:
        """Guest directory a relative path starts from (None: leave the call alone)."""
        return self._base_dirs(t, sc, pa)[0]

    def _base_dirs(self, t: Tracee, sc: Syscall, pa: PathArg) -> tuple[str | None, str | None]:
        """(guest, host) directory a relative path starts from."""
        fd = AT_FDCWD if pa.dirfd is None else sc.arg_int(pa.dirfd)
        if fd == AT_FDCWD:
            guest = t.guest_cwd()
            return guest, t.fs.host_cwd
        host = t.fd_host_path(fd)
        if host is None or host[:1] != "/" or host.endswith(" (deleted)"):
            return None, None
        return t.view.to_guest(host), host

    def _translate(self, t: Tracee, sc: Syscall, pa: PathArg) -> None:
        ptr = sc.args[pa.arg]
        if not ptr:
            return
        raw = pt.read_cstring(t.pid, ptr)
        if not raw:
            return  # "": ENOENT from the kernel, or AT_EMPTY_PATH on the dirfd
        guest = raw.decode("utf-8", ENC)
        follow = self._follow(sc, pa)
        if guest[0] != "/":
            if pa.abs_only:
                return
            if (not follow and self._lean and t.view is self.root_view and "/" not in guest
                    and guest not in self._bind_names and not sc.spec.invalidate):
                return  # one plain name, not followed, no binding: the kernel finds the same entry
            base, base_host = self._base_dirs(t, sc, pa)
            if base is None:
                return  # relative to an fd the guest cannot name: the kernel resolves it
            host = t.view.translator.to_host(guest, base, follow, t.tgid, t.pid)
            if host[:6] == "/proc/" and host.endswith("/cmdline") and sc.spec.follow_open:
                host = self._cmdline_file(t, host)
            sc.guest_paths[pa.arg] = guest
            sc.host_paths[pa.arg] = host
            # the same string the kernel would build from the dirfd: no symlink, '..' or
            # binding on the way, so the untouched relative call resolves identically
            if base_host is None or host != (base_host + "/" + guest if base_host != "/" else "/" + guest):
                sc.set_arg(pa.arg, sc.push_string(host))
            return
        if guest[:6] == "/proc/":
            guest = self._proc_path(t, guest, follow)
        host = t.view.translator.to_host(guest, "/", follow, t.tgid, t.pid)
        if host[:6] == "/proc/" and host.endswith("/cmdline") and sc.spec.follow_open:
            host = self._cmdline_file(t, host)
        sc.guest_paths[pa.arg] = guest
        sc.host_paths[pa.arg] = host
        if host != guest:
            sc.set_arg(pa.arg, sc.push_string(host))

    def _proc_path(self, t: Tracee, guest: str, follow: bool) -> str:
        """/proc/PID/exe of a tracee leads to its program (not the loader that runs
        it); /proc/PID/root/... to the guest root, when the guest sees the host's /proc."""
        if follow:
            m = _PROC_EXE.match(guest)
            if m:
                target = self._tracee_of(t, m.group(1))
                if target is not None and target.exe:
                    return target.exe
                return guest
        m = _PROC_ROOT.match(guest)
        if m and (follow or m.group(2)) and self._host_proc():
            return m.group(2) or "/"
        return guest

    def _host_proc(self) -> bool:
        try:
            return self.root_view.translator.to_host("/proc", "/", True) == "/proc"
        except GuestPathError:
            return False

    def _cmdline_file(self, t: Tracee, host: str) -> str:
        """/proc/PID/cmdline of a program run through its loader: a copy without
        the loader's words, so ps shows the program's own argv."""
        m = _PROC_CMDLINE.match(host)
        target = self._tracee_of(t, m.group(1)) if m else None
        if target is None or not target.loader_words:
            return host
        try:
            with open(f"/proc/{target.pid}/cmdline", "rb") as f:
                words = f.read().split(b"\0")
        except OSError:
            return host
        drop, prefix = target.loader_words
        if words and words[-1] == b"":
            words.pop()
        fixed = [w.encode("utf-8", ENC) for w in prefix] + words[drop:]
        if self._alias_dir is None:
            self._alias_dir = tempfile.mkdtemp(prefix="ocr", dir="/tmp")
        path = f"{self._alias_dir}/cmdline.{target.pid}"
        with open(path, "wb") as f:
            f.write(b"".join(w + b"\0" for w in fixed))
        self._scratch_files.add(path)
        return path

    def _tracee_of(self, t: Tracee, who: str) -> Tracee | None:
        if who == "self":
            return t
        return self.tracees.get(int(who))

    # ----------------------------------------------------------- kind handlers
    def _enter_getcwd(self, t: Tracee, sc: Syscall) -> None:
        try:
            host = os.readlink(f"/proc/{t.pid}/cwd")
        except OSError:
            host = ""
        if host.endswith(" (deleted)"):
            sc.skip(-errno.ENOENT)
            return
        cwd = (t.view.to_guest(host) if host else None) or t.guest_cwd()
        data = cwd.encode("utf-8", ENC) + b"\0"
        if len(data) > sc.args[1]:
            sc.skip(-errno.ERANGE)
            return
        t.write(sc.args[0], data)
        sc.skip(len(data))

    def _enter_chdir(self, t: Tracee, sc: Syscall) -> None:
        t.invalidate_cwd()  # re-read from /proc/PID/cwd at the next relative path

    def _enter_readlink(self, t: Tracee, sc: Syscall) -> None:
        idx = sc.spec.paths[0].arg
        host = sc.host_paths.get(idx)
        if host is None or not host.startswith("/proc/") or not is_proc_magic_link(host):
            return
        buf, size = sc.args[idx + 1], sc.args[idx + 2]
        m = _PROC_EXE.match(host)
        target_t = self._tracee_of(t, m.group(1)) if m else None
        if target_t is not None and target_t.exe:
            value = target_t.exe
        else:
            parts = host.split("/")
            if parts[2] == "self":
                parts[2] = str(t.pid)
            elif parts[2] == "thread-self":
                parts[2:3] = [str(t.pid), "task", str(t.pid)]
            real = "/".join(parts)
            if parts[-1] == "root" and len(parts) in (4, 6):
                value = "/"
            else:
                try:
                    value = t.view.translator.readlink_guest(real)
                except OSError as exc:
                    sc.skip(-(exc.errno or errno.ENOENT))
                    return
        data = value.encode("utf-8", ENC)[: max(0, _signed(size))]
        if _signed(size) <= 0:
            sc.skip(-errno.EINVAL)
            return
        t.write(buf, data)
        sc.skip(len(data))

    def _read_argv(self, t: Tracee, ptr: int, ptrs: list[int] | None = None) -> list[str]:
        """The strings of a NULL-terminated char* array (their addresses into `ptrs`)."""
        out: list[str] = []
        if not ptr:
            return out
        while len(out) < 1 << 16:
            chunk = t.read(ptr, 8 * 64)
            if len(chunk) < 8:
                break
            done = False
            for (p,) in struct.iter_unpack("<Q", chunk[: len(chunk) // 8 * 8]):
                if p == 0:
                    done = True
                    break
                out.append(t.read_string(p, 1 << 17))
                if ptrs is not None:
                    ptrs.append(p)
            if done:
                break
            ptr += len(chunk) // 8 * 8
        return out

    @staticmethod
    def _push_vector(sc: Syscall, new: list[str], old: list[str], old_ptrs: list[int]) -> int:
        """A char* array for `new` on the scratch stack; strings the guest already
        has in memory are pointed to, not copied (xargs-sized argvs fit)."""
        have = dict(zip(old, old_ptrs, strict=False))
        addrs = [have.get(a) or sc.push_string(a) for a in new]
        return sc.push(struct.pack(f"<{len(addrs) + 1}Q", *addrs, 0))

    def _enter_execve(self, t: Tracee, sc: Syscall) -> None:
        at = sc.spec.kind == "execveat"
        pidx = 1 if at else 0
        argv_ptr = sc.args[pidx + 1]
        envp_ptr = sc.args[pidx + 2]
        raw = pt.read_cstring(t.pid, sc.args[pidx]) if sc.args[pidx] else b""
        if at and not raw and sc.args[4] & AT_EMPTY_PATH:
            guest = t.fd_guest_path(sc.arg_int(0))  # fexecve
            if guest is None:
                return
        elif not raw:
            sc.skip(-errno.ENOENT if sc.args[pidx] else -errno.EFAULT)
            return
        else:
            guest = raw.decode("utf-8", ENC)
        cwd = t.guest_cwd()
        if guest[0] != "/" and at and sc.arg_int(0) != AT_FDCWD:
            base = self._base_dir(t, sc, sc.spec.paths[0]) or "/"
            guest = (base.rstrip("/") or "") + "/" + guest
        m = _PROC_EXE.match(guest)
        if m:
            target = self._tracee_of(t, m.group(1))
            if target is not None and target.exe:
                guest = target.exe
        argv_ptrs: list[int] = []
        argv = self._read_argv(t, argv_ptr, argv_ptrs)
        planner = t.view.planner
        env_ptrs: list[int] = []
        env = self._read_argv(t, envp_ptr, env_ptrs) if planner.foreign is not None else None  # QEMU: LD_* -> -E
        plan = planner.plan(guest, argv or [guest], cwd, env)
        try:
            path_addr = sc.push_string(plan.host_path)
            if plan.argv != argv:
                argv_addr = self._push_vector(sc, plan.argv, argv, argv_ptrs)
            else:
                argv_addr = argv_ptr
            if plan.new_env is not None:  # QEMU: the guest's LD_* moved to QEMU's -E
                envp_ptr = self._push_vector(sc, plan.new_env, env or [], env_ptrs)
        except OSError as exc:
            if exc.errno != errno.EFAULT:
                raise
            # the new argv does not fit below the stack pointer: the kernel's answer
            # to an argv too large (xargs then retries with fewer arguments)
            sc.skip(-errno.E2BIG)
            return
        if at:  # becomes a plain execve of the planned host file
            pt.poke_user(t.pid, self.arch.nr_slot, self.execve_nr)
        sc.set_arg(0, path_addr)
        sc.set_arg(1, argv_addr)
        sc.set_arg(2, envp_ptr)
        t.pending_exe = plan.guest_path
        t.pending_loader = plan.loader_words
        if self.verbose >= 1:
            print(f"ocirun: [{t.pid}] execve {guest} -> {plan.host_path} {plan.argv}", file=sys.stderr)

    # ------------------------------------------------------------- getdents64
    def _note_dir_open(self, sc: Syscall, spec) -> None:
        """An open of a directory that lacks a bound name: learn its fd at the exit."""
        host = sc.host_paths.get(spec.paths[0].arg)
        if host is None:
            return
        host = host.rstrip("/") or "/"
        if host.endswith("/."):
            host = host[:-2] or "/"
        guest = self.listed_dirs.get(host)
        if guest is not None:
            sc.notes["listed_dir"] = (host, guest)
            sc.want_exit()

    def _enter_getdents(self, t: Tracee, sc: Syscall) -> None:
        if (t.tgid, sc.arg_int(0)) in self.open_dirs:
            sc.want_exit()

    def _fix_getdents(self, t: Tracee, sc: Syscall) -> None:
        """End of a listed directory: the bound names it lacks, as many as fit, once."""
        key = (t.tgid, sc.arg_int(0))
        state = self.open_dirs.get(key)
        if state is None:  # no-seccomp mode: every getdents64 has an exit stop
            return
        host, guest, pending = state
        if pending is None:
            if (t.fd_host_path(key[1]) or "").rstrip("/") != host.rstrip("/"):
                del self.open_dirs[key]  # the fd was closed and reused: not ours anymore
                return
            pending = [n for n in t.view.translator.bound_children(guest)
                       if not os.path.lexists(os.path.join(host, n))]
        size = sc.args[2] & 0xFFFFFFFF
        out = b""
        while pending:
            rec = self._dirent64(guest, pending[0], 0x7FFFFFF0 + len(out))
            if len(out) + len(rec) > size:
                break
            out += rec
            pending = pending[1:]
        self.open_dirs[key] = (host, guest, pending)
        if out:
            t.write(sc.args[1], out)
            sc.set_result(len(out))
        elif pending:
            sc.set_result(-errno.EINVAL)  # the kernel's answer to a buffer too small for one entry

    def _dirent64(self, guest_dir: str, name: str, off: int) -> bytes:
        raw = name.encode("utf-8", ENC)
        reclen = (_DIRENT64_HEAD + len(raw) + 1 + 7) & ~7
        try:
            st = os.lstat(self.translator.to_host(guest_dir.rstrip("/") + "/" + name, "/", False))
            ino, dtype = st.st_ino, stat.S_IFMT(st.st_mode) >> 12
        except (GuestPathError, OSError):
            ino, dtype = 1, 0  # DT_UNKNOWN
        return struct.pack("<QqHB", ino, off, reclen, dtype) + raw + b"\0" * (reclen - _DIRENT64_HEAD - len(raw))

    # ------------------------------------------------------------------ prctl
    def _enter_prctl(self, t: Tracee, sc: Syscall) -> None:
        """PR_SET_DUMPABLE is remembered, not run: the guest stays readable to this
        tracer (sudo, ssh-agent); PR_GET_DUMPABLE answers from what was remembered."""
        option = sc.arg_int(0)
        if option == PR_SET_DUMPABLE:
            if sc.args[1] > 1:
                sc.skip(-errno.EINVAL)
                return
            if sc.args[1] == 1:
                self.dumpable.pop(t.tgid, None)
            else:
                self.dumpable[t.tgid] = 0
            sc.skip(0)
        elif option == PR_GET_DUMPABLE:
            sc.skip(self.dumpable.get(t.tgid, 1))
        else:
            self._enter_nest(t, sc)

    # ------------------------------------------------------------------ nesting
    def _enter_nest(self, t: Tracee, sc: Syscall) -> None:
        """prctl(NEST_MAGIC, json, len) from an `ocirun proot` running in the guest:
        from now on its process sees its own rootfs and bindings, composed with
        this tracer's view (ptrace cannot nest: its children are ours already)."""
        if sc.args[0] & 0xFFFFFFFF != NEST_MAGIC or not sc.args[1] or not 0 < sc.args[2] < 1 << 20:
            return
        try:
            fields = t.read(sc.args[1], sc.args[2]).decode("utf-8", ENC).split("\0")
            if len(fields) % 3 != 1:
                raise ValueError("bad nesting request")
            outer = t.view
            cwd = t.guest_cwd()
            rootfs = outer.translator.canonical(fields[0], cwd, True, t.tgid, t.pid)
            rootfs_host = outer.translator.to_host(rootfs, "/", True, t.tgid, t.pid)
            bindings: list[Binding] = []
            for b in outer.bindings:  # the outer bindings the inner rootfs contains
                if rootfs == "/" or b.guest == rootfs or b.guest.startswith(rootfs + "/"):
                    inner_guest = b.guest[len(rootfs):] if rootfs != "/" else b.guest
                    bindings.append(Binding(b.host, inner_guest or "/", b.deref_guest, b.readonly))
            for k in range(1, len(fields), 3):
                host, guest, deref = fields[k], fields[k + 1], fields[k + 2] == "1"
                try:
                    real = outer.translator.to_host(host, cwd, True, t.tgid, t.pid)
                except GuestPathError:
                    continue  # missing host path: skipped, as PRoot does
                bindings.append(Binding(real, guest, bool(deref)))
        except (ValueError, KeyError, TypeError, OSError) as exc:
            sc.skip(-(getattr(exc, "errno", None) or errno.EINVAL))
            return
        translator = PathTranslator(rootfs_host, bindings)
        view = View(self, translator, None, bindings)  # type: ignore[arg-type]
        foreign, host_program = self._qemu_hooks
        view.planner = ExecPlanner(view.to_host, view.to_guest, self.arch.name,
                                   foreign=foreign, host_program=host_program)
        self.views.append(view)
        t.view = view
        t.invalidate_cwd()
        sc.skip(0)

    # ------------------------------------------------------------ unix sockets
    def _alias(self, host: str) -> str:
        """A path under 108 bytes naming `host` (a socket path): a symlink to its directory
        in a private short tmp dir, as PRoot does."""
        if self._alias_dir is None:
            self._alias_dir = tempfile.mkdtemp(prefix="ocr", dir="/tmp")
        parent, _, name = host.rpartition("/")
        alias = next((a for a, target in self._aliases.items() if target == parent), None)
        if alias is None:
            alias = f"{self._alias_dir}/{len(self._aliases)}"
            os.symlink(parent or "/", alias)
            self._aliases[alias] = parent
        out = alias + "/" + name
        if len(out.encode("utf-8", ENC)) >= SUN_PATH_MAX:
            raise GuestPathError(errno.ENAMETOOLONG)
        return out

    def _unalias(self, host: str) -> str:
        for alias, target in self._aliases.items():
            if host == alias or host.startswith(alias + "/"):
                return target + host[len(alias):]
        return host

    def _cleanup_aliases(self) -> None:
        if self._alias_dir is None:
            return
        for alias in list(self._aliases) + list(self._scratch_files):
            try:
                os.unlink(alias)
            except OSError:
                pass
        try:
            os.rmdir(self._alias_dir)
        except OSError:
            pass

    def _translate_sockaddr(self, t: Tracee, sc: Syscall, addr: int, length: int, creating: bool) -> bytes | None:
        """A new struct sockaddr_un for the host, or None when nothing changes."""
        if not addr or length <= 2 or length > 128:
            return None
        data = t.read(addr, length)
        if len(data) < 3 or struct.unpack_from("<H", data)[0] != AF_UNIX or data[2] == 0:
            return None  # not AF_UNIX, or an abstract socket
        raw = data[2:].split(b"\0", 1)[0]
        guest = raw.decode("utf-8", ENC)
        base = "/" if guest.startswith("/") else t.guest_cwd()
        host = t.view.translator.to_host(guest, base, not creating, t.tgid, t.pid)
        sc.guest_paths[sc.spec.sockaddr[0] if sc.spec.sockaddr else 1] = guest
        sc.host_paths[sc.spec.sockaddr[0] if sc.spec.sockaddr else 1] = host
        if host == guest:
            return None
        hb = host.encode("utf-8", ENC)
        if len(hb) >= SUN_PATH_MAX:
            hb = self._alias(host).encode("utf-8", ENC)
        return struct.pack("<H", AF_UNIX) + hb + b"\0"

    def _enter_sockaddr(self, t: Tracee, sc: Syscall) -> None:
        a, ln = sc.spec.sockaddr
        new = self._translate_sockaddr(t, sc, sc.args[a], sc.args[ln], sc.spec.name == "bind")
        if new is not None:
            sc.set_arg(a, sc.push(new))
            sc.set_arg(ln, len(new))

    def _enter_sendmsg(self, t: Tracee, sc: Syscall) -> None:
        msg = sc.args[1]
        if not msg:
            return
        hdr = t.read(msg, 56)
        if len(hdr) < 56:
            return
        name, namelen = struct.unpack_from("<QI", hdr, 0)
        new = self._translate_sockaddr(t, sc, name, namelen, False)
        if new is not None:
            name_addr = sc.push(new)
            hdr = struct.pack("<QI", name_addr, len(new)) + hdr[12:]
            sc.set_arg(1, sc.push(hdr))

    def _enter_sockname(self, t: Tracee, sc: Syscall) -> None:
        a, ln = sc.spec.sockaddr
        if sc.args[a] and sc.args[ln]:
            try:
                sc.notes["buflen"] = t.read_u32(sc.args[ln])
            except OSError:
                return
            sc.want_exit()

    _enter_accept = _enter_sockname

    def _fix_sockname(self, t: Tracee, sc: Syscall) -> None:
        """Reverse-translate an AF_UNIX address the kernel wrote back."""
        a, ln = sc.spec.sockaddr
        addr, lenp = sc.args[a], sc.args[ln]
        if not addr or not lenp:
            return
        buflen = sc.notes.get("buflen", 0)
        try:
            outlen = t.read_u32(lenp)
            data = t.read(addr, min(buflen, outlen, 110))
        except OSError:
            return
        if len(data) < 3 or struct.unpack_from("<H", data)[0] != AF_UNIX or data[2] == 0:
            return
        host = data[2:].split(b"\0", 1)[0].decode("utf-8", ENC)
        guest = t.view.to_guest(host)
        if guest is None or guest == host:
            return
        new = struct.pack("<H", AF_UNIX) + guest.encode("utf-8", ENC) + b"\0"
        t.write(addr, new[:buflen])
        t.write_u32(lenp, len(new))

    # ------------------------------------------------------------------ trace
    def _trace(self, t: Tracee, sc: Syscall) -> None:
        paths = " ".join(f"{sc.guest_paths[i]!r}->{sc.host_paths.get(i)!r}" for i in sc.guest_paths)
        res = f" = {sc.skip_result}" if sc.skipped else ""
        print(f"[{t.pid}] {sc.name}({', '.join(hex(a) for a in sc.args[:4])}) {paths}{res}", file=sys.stderr)

    def _trace_other(self, t: Tracee, info: pt.SyscallInfo) -> None:
        print(f"[{t.pid}] {self.nr_names.get(info.nr, info.nr)}(...)", file=sys.stderr)


def _child_reset_signals(pdeathsig: bool = True) -> None:
    """What Python changed and exec would keep: ignored SIGPIPE/SIGXFSZ, the signal mask."""
    for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        try:
            signal.signal(sig, signal.SIG_DFL)
        except (OSError, ValueError):
            pass
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    if pdeathsig:
        ctypes_prctl_pdeathsig()


def ctypes_prctl_pdeathsig() -> None:
    """If ocirun dies before the exec, the child dies too (it is not traced yet)."""
    try:
        pt.libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001
        pass


class _SignalForwarder:
    """SIGINT/SIGTERM/SIGHUP/SIGQUIT sent to ocirun reach the guest's first process.

    A signal the terminal sends (Ctrl-C) already reaches the guest, which is in
    ocirun's foreground process group; only signals sent with kill() (si_code
    <= 0) are forwarded, so a Ctrl-C is not delivered twice. The signals are
    blocked in the tracer and read by this thread with sigwaitinfo.
    """

    def __init__(self, pid: int):
        self.pid = pid
        self.sigs = set(FORWARDED_SIGNALS)
        self.old = signal.pthread_sigmask(signal.SIG_BLOCK, self.sigs | {signal.SIGUSR2})
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True, name="ocirun-signals")
        self.thread.start()

    def _run(self) -> None:
        while self.running:
            try:
                info = signal.sigwaitinfo(self.sigs | {signal.SIGUSR2})
            except (OSError, InterruptedError):
                continue
            if not self.running:
                return
            if info.si_signo == signal.SIGUSR2 and info.si_pid == os.getpid():
                return
            if info.si_code <= 0 and info.si_signo != signal.SIGUSR2:
                try:
                    os.kill(self.pid, info.si_signo)
                except OSError:
                    pass

    def stop(self) -> None:
        self.running = False
        try:
            signal.pthread_kill(self.thread.ident, signal.SIGUSR2)
        except (OSError, TypeError):
            pass
        self.thread.join(0.5)
        signal.pthread_sigmask(signal.SIG_SETMASK, self.old)
