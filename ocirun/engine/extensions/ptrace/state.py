"""What the ptrace emulation knows of each guest tracer and tracee, and the wait
statuses the kernel would give the guest tracer (include/uapi/linux/ptrace.h, wait(2))."""

from __future__ import annotations

from ocirun.engine import extension as ext
from ocirun.engine import ptrace as pt
from ocirun.util.records import dataclass, field

TYPE_CHECKING = False  # typing's, without importing typing (start-up time)
if TYPE_CHECKING:
    from ocirun.engine.syscall import Syscall
    from ocirun.engine.tracee import Tracee

SIGSTOP = 19
SIGTRAP = pt.SIGTRAP
EVENT_STOP = pt.PTRACE_EVENT_STOP

# PTRACE_O_*: what a guest tracer may set (others: EINVAL, as the kernel). PTRACE_O_TRACESECCOMP
# is refused: the engine's own filter and a guest's stack, and their stops cannot be told apart
O_TRACESYSGOOD = 0x1
O_TRACEEXEC = 0x10
O_TRACEVFORKDONE = 0x20
O_TRACEEXIT = 0x40
O_EXITKILL = 0x100000
O_VALID = 0x1 | 0x2 | 0x4 | 0x8 | 0x10 | 0x20 | 0x40 | 0x100000
O_REAL = O_TRACEEXIT | O_TRACEVFORKDONE  # events the engine itself does not ask the kernel for

# the option that makes each event reach the guest tracer
EVENT_OPTION = {
    pt.PTRACE_EVENT_FORK: 0x2,
    pt.PTRACE_EVENT_VFORK: 0x4,
    pt.PTRACE_EVENT_CLONE: 0x8,
    pt.PTRACE_EVENT_EXEC: O_TRACEEXEC,
    pt.PTRACE_EVENT_VFORK_DONE: O_TRACEVFORKDONE,
    pt.PTRACE_EVENT_EXIT: O_TRACEEXIT,
}
FORK_EVENTS = (pt.PTRACE_EVENT_FORK, pt.PTRACE_EVENT_VFORK, pt.PTRACE_EVENT_CLONE)


def stopped(sig: int, event: int = 0) -> int:
    """The wait status of a ptrace-stop (WIFSTOPPED, WSTOPSIG = sig, event in bits 16-23)."""
    return (sig | event << 8) << 8 | 0x7F


@dataclass(eq=False)
class Ptracee:
    """A guest process or thread traced by a guest tracer (the engine stays its real tracer)."""

    tracee: Tracee
    tracer: int  # thread group id of the guest tracer
    seized: bool = False  # PTRACE_SEIZE (group stops and new children report PTRACE_EVENT_STOP)
    options: int = 0
    syscalls: bool = False  # resumed with PTRACE_SYSCALL: syscall stops go to the tracer
    stop: ext.Stop | None = None  # the stop it is kept in for its tracer (None: it runs)
    status: int = 0  # the wait status of that stop, or of its end
    reported: bool = True  # the tracer's wait took `status` (False: it is pending)
    gone: bool = False  # it ended: `status` is its exit status, for the tracer's wait
    interrupt: bool = False  # the tracer's PTRACE_INTERRUPT is on its way
    adopted: bool = False  # traced from its creation (its first stop is its tracer's)
    listened: bool = False  # PTRACE_LISTEN: the next PTRACE_EVENT_STOP is for the tracer
    loader: LoaderSteps | None = None  # ocirun's loader step of its last exec, hidden
    exec_status: int | None = None  # the exec stop, reported once the loader step is over
    real_options: int = pt.SEIZE_OPTIONS  # the engine's own PTRACE_O_* on the real tracee

    @property
    def tid(self) -> int:
        return self.tracee.pid

    def status_of(self, stop: ext.Stop) -> int | None:
        """The status the kernel would report to the guest tracer for this real stop
        (None: a stop the guest tracer never sees)."""
        kind = stop.kind
        if self.interrupt and kind != ext.STOP_SIGNAL:  # PTRACE_INTERRUPT: the next stop is the trap
            self.interrupt = False
            return stopped(SIGTRAP, EVENT_STOP)
        if kind == ext.STOP_ENTRY or kind == ext.STOP_EXIT:
            if not self.syscalls:
                return None
            return stopped(SIGTRAP | 0x80 if self.options & O_TRACESYSGOOD else SIGTRAP)
        if kind == ext.STOP_SIGNAL:
            return stopped(stop.sig)
        if kind == ext.STOP_GROUP:
            return stopped(stop.sig, EVENT_STOP if self.seized else 0)
        if kind == ext.STOP_FIRST:  # of a child its tracer traces from its start (PTRACE_O_TRACEFORK...)
            if not self.adopted:
                return None
            return stopped(SIGTRAP, EVENT_STOP) if self.seized else stopped(SIGSTOP)
        if kind == ext.STOP_INTERRUPT:  # what the tracer asked for: PTRACE_INTERRUPT, LISTEN's notice
            if not self.listened:
                return None
            self.listened = False
            return stopped(stop.sig, EVENT_STOP)
        if kind == ext.STOP_EVENT:
            option = EVENT_OPTION.get(stop.event, 0)
            if self.options & option:
                return stopped(SIGTRAP, stop.event)
        return None


@dataclass(eq=False)
class LoaderSteps:
    """ocirun runs a dynamic program as `ld.so PROGRAM`: the loader opens, reads, maps and
    closes PROGRAM before the guest's own first steps. Those calls are hidden from the
    guest tracer, from the open of `program` to the close of its descriptor."""

    program: str
    fd: int | None = None  # the descriptor once opened (hidden until it is closed)
    hiding: bool = False
    closing: bool = False
    seen: int = 0  # syscalls since the exec (the loader opens the program among the first)


@dataclass(eq=False)
class WaitCall:
    """A guest tracer's wait4/waitid, kept for when one of its tracees stops."""

    sc: Syscall
    waitid: bool
    pid: int  # wait4's pid argument; for waitid: -1 (P_ALL), the id (P_PID), -pgid (P_PGID)
    options: int
    status_addr: int  # wait4's status, or waitid's siginfo
    rusage_addr: int
    kept: bool = False  # the kernel found nothing: the tracer is kept at the syscall's exit
    interrupted: bool = False  # in the kernel: our PTRACE_INTERRUPT makes it restart


@dataclass(eq=False)
class Ptracer:
    """A guest process (thread group) tracing others."""

    tgid: int
    ptracees: dict[int, Ptracee] = field(default_factory=dict)
    waits: dict[int, WaitCall] = field(default_factory=dict)  # thread id -> its wait in progress
