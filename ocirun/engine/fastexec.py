"""The compiled fast path's execve (ocirun/engine/_fastexec.c), fed from Python's plans.

An execve that enter_execve carried out with a plan the fast path can repeat (a native
ELF, static or run by the guest's loader, no QEMU, the root view) leaves an exec record: the program's host file and the first bytes its plan was parsed from, its
/proc/self/exe, PT_INTERP with the loader's host path and stat identity (whether it
takes --argv0 was read from that file), and the name executed with its link to the
loader; a script run by such an ELF (one "#!" line) also a script record: its host file,
its bytes to the end of that line, the interpreter and its argument (_fastscript.c).
The translations it used are mirrored as any path's. The fast path repeats
the plan only while all of it is still so (it reads the bytes again); the exe and the
loader's words of an execve it carried out come back to Python at the exec event.

The fast path also resumes the stops of a fork+exec no extension keeps (every stop hook
is an extension's that keeps none while the fast path runs, Extension.plain_stops): a
signal-delivery stop of a process whose last stop it finished, a child's first stop
once Python handled the fork event (expect_first). And it resumes fork events, exec
events and ends, handing them to Python later, in order (ProcessTree._tree_events); the
children it saw fork meanwhile are in guest_pids() for the threads that ask.
"""

from __future__ import annotations

import os
import stat
import sys
from types import ModuleType

from ocirun.engine.execve import BINPRM_BUF_SIZE, ExecPlan, parse_elf, parse_shebang
from ocirun.engine.extension import Extension
from ocirun.engine.path.errors import GuestPathError

TYPE_CHECKING = False  # typing's, without importing typing (start-up time)
if TYPE_CHECKING:
    from ocirun.engine.loop import Tracer
    from ocirun.engine.tracee import Tracee

HEAD_MAX = 8192  # _fastexec.c: EXEC_HEAD_MAX
F_EXEC = 32  # _fastexec.c: the mode of execve in set_syscall
Q_EXEC, Q_EXIT, Q_FORK = 1, 2, 3  # _fastexec.c: the kinds of the events it hands on (on_tree)
ENC = "surrogateescape"


def start(tracer: Tracer, fast: ModuleType) -> None:
    """Configure the fast path's part in fork+exec (fastpath.start)."""
    if applies(tracer):
        fast.set_syscall(tracer.names["execve"], 0, F_EXEC, 0, 0, False, 0xFF, False)
    fast.set_plain_stops(all(getattr(hook.__self__, "plain_stops", False) for hook in tracer.stop_hooks))


def started(tracer: Tracer) -> None:
    """The first process runs (Tracer.run): fork and exec events, and the ends of the
    other processes, may be resumed by the fast path and handed to Python later, when no
    extension has a hook for them (or its hooks keep nothing: plain_stops; its fork hook
    needs nothing of the stop: fork_hook_later). Forks only
    while the CPU pinning holds: once released, Python unpins each new child."""
    fast = tracer.fast
    if fast is None:
        return
    exts = tracer.extensions
    execs = all(type(e).on_exec is Extension.on_exec for e in exts)
    ends = all(type(e).on_process_exit is Extension.on_process_exit or e.plain_stops for e in exts)
    forks = all(type(e).on_fork is Extension.on_fork or e.fork_hook_later for e in exts)
    pinning = tracer.pinning
    fast.set_fork_pinning(not (pinning.released and pinning.enabled))
    pinning.on_release = lambda: fast.set_fork_pinning(False)
    fast.set_deferred(execs, ends, forks, tracer.first_pid, tracer._tree_events)


def born(tracer: Tracer) -> list[int]:
    """The guest processes the fast path saw forked that Python has not been told of yet
    (any thread may ask: the CPU-pinning monitor, the signal forwarder)."""
    fast = tracer.fast
    return fast.born() if fast is not None else []


def expect_first(tracer: Tracer, child: Tracee) -> None:
    """A forked child whose first stop has not come: the fast path resumes it then, as
    the fork event's handler would (ProcessTree._fork_event)."""
    fast = tracer.fast
    if fast is not None and not child.seen_first_stop and fast.expect_first(child.pid):
        child.seen_first_stop = True


def applies(tracer: Tracer) -> bool:
    """The fast path may carry out execve: no QEMU hook, no extension trapping it, no
    -v line to print for it."""
    planner = tracer.planner
    nr = tracer.names["execve"]
    return (planner.foreign is None and planner.host_program is None and tracer.verbose == 0
            and nr not in tracer.ext_nrs and nr < 512)


def note(tracer: Tracer, t: Tracee, guest: str, plan: ExecPlan, host_file: str) -> None:
    """After enter_execve carried out `plan` for guest path `guest` (an execve, not
    execveat) by executing `host_file`: the exec record, when the plan is one the fast
    path can repeat (a script's: with its interpreter's, one "#!" line)."""
    fast = tracer.fast
    elf = plan.elf
    if (fast is None or t.view is not tracer.root_view or len(plan.chain) > 1 or elf is None
            or plan.new_env is not None or guest[:1] == "" or guest[-1:] == "/" or not applies(tracer)):
        return
    host = plan.program_host
    if tracer.to_guest(host) != plan.guest_path or _under_scratch(tracer, host):
        return  # (its exe would depend on more than the host path)
    head, want = _head(host, elf)
    if head is None:
        return
    cwd = t.guest_cwd()
    key = guest if guest[0] == "/" else ("" if cwd == "/" else cwd) + "/" + guest
    script = _script(tracer, key, host) if plan.chain else None
    if plan.chain and script is None:
        return
    mirror = tracer.path_args.mirror
    mirror(t, key, script[0] if script else host, True)
    if script:
        mirror(t, script[2], host, True)
    interp = loader = name = link = b""
    ident = (0, 0, 0, 0, 0, 0, 0)
    argv0 = False
    if plan.loader_words is not None:
        if not elf.interp or elf.interp[0] != "/":
            return
        try:
            st = os.stat(plan.host_path)
        except OSError:
            return
        if not stat.S_ISREG(st.st_mode):
            return
        mirror(t, elf.interp, plan.host_path, True)
        ident = (st.st_dev, st.st_ino, st.st_size, *divmod(st.st_mtime_ns, 10**9), *divmod(st.st_ctime_ns, 10**9))
        argv0 = plan.loader_words[0] == 4
        interp, loader = _b(elf.interp), _b(plan.host_path)
        name, link = _b(guest.rpartition("/")[2]), _b(host_file)
    elif host_file != host:
        return
    fast.exec_record(_b(host), head, want, _b(plan.guest_path), interp, loader, ident, argv0, name, link)
    if script:
        fast.script_record(_b(script[0]), script[1], _b(script[2]), _b(script[3]))


def _script(tracer: Tracer, key: str, interp_host: str) -> tuple[str, bytes, str, str] | None:
    """A script's record: its host file, its first bytes to the end of the "#!" line (a
    line the file's first BINPRM_BUF_SIZE bytes end: else the bytes after them could
    change it), the interpreter (absolute, the plan's `interp_host`) and its argument."""
    try:
        host = tracer.to_host(key)
        with open(host, "rb") as f:
            data = f.read(BINPRM_BUF_SIZE)
    except (GuestPathError, OSError):
        return None
    end = data.find(b"\n")
    shebang = parse_shebang(data[:end + 1]) if end > 0 else None
    if shebang is None or _under_scratch(tracer, host):
        return None
    interp, arg = shebang
    try:
        if interp[:1] != "/" or interp[:6] == "/proc/" or tracer.to_host(interp) != interp_host:
            return None
    except (GuestPathError, OSError):
        return None
    return host, data[:end + 1], interp, arg or ""


def _head(host: str, elf: object) -> tuple[bytes | None, int]:
    """The first bytes of `host` the plan's parse depends on (the shebang test's 256, the
    ELF header, program headers and PT_INTERP) and how many were asked for; None when
    they are too many or do not give `elf` again (the file changed meanwhile)."""
    try:
        with open(host, "rb") as f:
            data = f.read(HEAD_MAX)
    except OSError:
        return None, 0
    ends = [256]

    def read_at(offset: int, size: int) -> bytes:
        ends.append(offset + size)
        return data[offset:offset + size]

    try:
        again = parse_elf(data[:64], read_at)
    except Exception:  # struct.error: a truncated table
        return None, 0
    want = max(ends)
    if again != elf or want > HEAD_MAX or parse_shebang(data[:256]) is not None:
        return None, 0
    return data[:want], want


def _under_scratch(tracer: Tracer, host: str) -> bool:
    scratch = tracer.scratch.path
    return scratch is not None and host.startswith(scratch + "/")


def taken(tracer: Tracer, fast: ModuleType, pid: int) -> None:
    """The exe and loader words of an execve the fast path carried out for `pid`, as
    enter_execve would have left them on its Tracee (for the exec event)."""
    done = fast.exec_taken(pid)
    t = tracer.tracees.get(pid)
    if done is not None and t is not None:
        pending(t, *done)


def pending(t: Tracee, exe: bytes, words: int, argv0: bytes | None) -> None:
    """enter_execve's pending_exe and pending_loader, from the fast path's execve."""
    t.pending_exe = exe.decode("utf-8", ENC)
    t.pending_loader = None if words == 0 else (words, [argv0.decode("utf-8", ENC)] if argv0 is not None else [])


def drain(tracer: Tracer, fast: ModuleType) -> None:
    """Before the fast path is turned off: the execve it carried out whose exec event
    has not come yet, and the first stops it expects, are handed to Python."""
    fast.tree_events()  # (older than what follows)
    for pid in list(tracer.tracees):
        taken(tracer, fast, pid)
    for pid in fast.first_expected():
        t = tracer.tracees.get(pid)
        if t is not None:
            t.seen_first_stop = False


def report(fast: ModuleType) -> None:
    """OCIRUN_FASTPATH_STATS: the process-tree stops the fast path finished (fastpath.report)."""
    signals, firsts, execs, ends, forks = fast.tree_stats()
    print(f"ocirun: fast path: also {signals} signal stops, {firsts} first stops, {execs} exec events, {ends} ends,"
          f" {forks} fork events", file=sys.stderr)


def _b(s: str) -> bytes:
    return s.encode("utf-8", ENC)
