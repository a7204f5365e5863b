"""Starting the guest: the first process (forked, seized, seccomp filter installed
right before its execve), the PATH look-up in the guest, and the forwarding of
signals sent to ocirun to that first process."""

from __future__ import annotations

import _signal as signal  # the C module: `signal` builds its enums at import (~2 ms a start)
import _thread
import errno
import os
from collections.abc import Callable

from ocirun.engine import fastpath, seccomp
from ocirun.engine import ptrace as pt
from ocirun.engine.multiplex import socketcall_rule
from ocirun.engine.path.errors import GuestPathError
from ocirun.engine.tracee import Tracee
from ocirun.errors import OcirunError

TYPE_CHECKING = False  # typing's, without importing typing (start-up time)
if TYPE_CHECKING:
    from ocirun.engine.loop import Tracer

FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
PR_SET_PDEATHSIG = 1


def resolve_command(to_host: Callable[[str, str, bool], str], argv0: str, env: dict[str, str],
                    cwd: str) -> str:
    """The guest path execve gets for argv[0]: PATH lookup in the guest, with
    the shell's 126/127 errors reported by ocirun before anything runs.
    to_host: guest -> host path (identity when this process already sees the guest)."""
    if "/" in argv0:
        candidates = [argv0]
    else:
        path = env.get("PATH", "/usr/local/bin:/usr/bin:/bin")
        candidates = [(d or ".").rstrip("/") + "/" + argv0 for d in path.split(":")]
    found_noexec = None
    for cand in candidates:
        try:
            host = to_host(cand, cwd, True)
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


def _guest_cwd(tracer: Tracer) -> tuple[str, str]:
    """(guest, host) initial working directory, checked."""
    plan = tracer.plan
    try:
        guest_cwd = tracer.translator.canonical(plan.cwd or "/", "/", True)
        host_cwd = tracer.to_host(guest_cwd, "/", True)
    except GuestPathError as exc:
        raise OcirunError(f"working directory '{plan.cwd}' does not exist in the guest: {exc.strerror}") from None
    if not os.path.isdir(host_cwd):
        raise OcirunError(f"working directory '{plan.cwd}' is not a directory in the guest")
    return guest_cwd, host_cwd


def _child(tracer: Tracer, r: int, w: int, host_cwd: str, prog: str, argv: list[str],
           env: dict[str, str], prepared: object) -> None:
    """In the forked child: wait for the tracer's go, then become the guest."""
    try:
        os.close(w)
        child_reset_signals()
        if tracer.pinning.released:
            os.sched_setaffinity(0, tracer.pinning.allowed)
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
    except BaseException:  # never return into the parent's code
        os._exit(125)
    os._exit(125)


def filter_rules(tracer: Tracer) -> list[seccomp.ArchRules]:
    """What the seccomp filter traps in each ABI: the table's and the extensions' syscalls,
    without a stop where a bpf_allow rule says the call names no path."""
    out = []
    for abi in tracer.abis.values():
        allow = {nr: spec.bpf_allow for nr, spec in abi.table.items() if spec.bpf_allow and nr not in abi.ext_nrs}
        if "socketcall" in abi.names and abi.names["socketcall"] not in abi.ext_nrs:
            allow[abi.names["socketcall"]] = socketcall_rule(abi)
        out.append(seccomp.ArchRules(abi.arch, abi.trapped, allow))
    return out


def spawn(tracer: Tracer) -> int:
    """Fork the guest's first process, seize it and let it exec; its pid."""
    plan = tracer.plan
    env = dict(os.environ if plan.env is None else plan.env)
    argv = list(plan.argv) or ["/bin/sh"]
    guest_cwd, host_cwd = _guest_cwd(tracer)
    prog = resolve_command(tracer.to_host, argv[0], env, guest_cwd)
    tracer.pinning.pin()
    prepared = seccomp.prepare(seccomp.build_filter(filter_rules(tracer))) if tracer.use_seccomp else None
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: becomes the guest's first process
        _child(tracer, r, w, host_cwd, prog, argv, env, prepared)
    os.close(r)
    try:
        pt.seize(pid)
    except OSError as exc:
        _abandon(pid, w)
        raise OcirunError(
            f"ptrace is not permitted here ({os.strerror(exc.errno or 1)}): the engine needs ptrace "
            "(check kernel.yama.ptrace_scope or a container's seccomp profile)"
        ) from None
    except BaseException:  # interrupted (a signal's handler raised): no half-started guest
        _abandon(pid, w)
        raise
    t = Tracee(pid=pid, engine=tracer, exe=prog, view=tracer.root_view, abi=tracer.abi)
    t.seen_first_stop = True
    t.fs.cwd = guest_cwd
    t.fs.host_cwd = os.path.realpath(host_cwd)
    t.fs.name_cwd(t.fs.host_cwd, guest_cwd)
    tracer.tracees[pid] = t
    tracer.first_pid = pid
    fastpath.mirror_cwd(tracer.fast, t)
    os.write(w, b"g")
    os.close(w)
    return pid


def _abandon(pid: int, w: int) -> None:
    """The child waiting for the go: it must not outlive a failed start (it holds our fds)."""
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    os.close(w)


def child_reset_signals(pdeathsig: bool = True) -> None:
    """What Python changed and exec would keep: ignored SIGPIPE/SIGXFSZ, the signal mask.
    pdeathsig: if ocirun dies before the exec, the child dies too (it is not traced yet)."""
    for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        try:
            signal.signal(sig, signal.SIG_DFL)
        except (OSError, ValueError):
            pass
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    if pdeathsig:
        pt.libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class SignalForwarder:
    """SIGINT/SIGTERM/SIGHUP/SIGQUIT sent to ocirun reach the guest's first process.

    A signal the terminal sends (Ctrl-C) already reaches the guest, which is in
    ocirun's foreground process group; only signals sent with kill() (si_code
    <= 0) are forwarded, so a Ctrl-C is not delivered twice. As in PRoot, one a
    guest process sends to the tracer (`kill $TracerPid`) is ignored. The signals
    are blocked in the tracer from before the guest starts (one sent meanwhile
    waits) and read by this thread with sigwaitinfo once the guest's pid is known. The
    thread is a bare `_thread`: start() does not wait for it to run (the guest is starting
    on the same CPU), a SIGUSR2 sent before it waits stays pending for it.
    """

    def __init__(self, is_guest: Callable[[int], bool] = lambda pid: False):
        self.pid = 0
        self.is_guest = is_guest
        self.sigs = set(FORWARDED_SIGNALS)
        self.old = signal.pthread_sigmask(signal.SIG_BLOCK, self.sigs | {signal.SIGUSR2})
        self.running = True
        self.thread: int | None = None  # its ident
        self.done = _thread.allocate_lock()  # held while it runs

    def start(self, pid: int) -> None:
        self.pid = pid
        self.done.acquire()
        self.thread = _thread.start_new_thread(self._serve, ())

    def _serve(self) -> None:
        try:
            self._run()
        finally:
            self.done.release()

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
            if info.si_code <= 0 and info.si_signo != signal.SIGUSR2 and not self.is_guest(info.si_pid):
                try:
                    os.kill(self.pid, info.si_signo)
                except OSError:
                    pass

    def wake(self) -> None:
        """Tell the thread to end (stop() waits for it)."""
        if self.running and self.thread is not None:
            self.running = False
            try:
                signal.pthread_kill(self.thread, signal.SIGUSR2)
            except OSError:
                pass
        self.running = False

    def stop(self) -> None:
        self.wake()
        if self.thread is not None:
            if self.done.acquire(timeout=0.5):
                self.done.release()
        signal.pthread_sigmask(signal.SIG_SETMASK, self.old)
