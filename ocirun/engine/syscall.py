"""The Syscall object: one guest syscall between its entry and exit stops.

The core creates it at the entry stop (seccomp stop, or syscall-enter stop in
the no-seccomp mode), translates its paths, then hands it to each extension's
on_enter. If an exit stop was asked for, the same object comes back to
on_exit with the result.

API for extensions:

    sc.tracee          the Tracee
    sc.nr, sc.name     syscall number and name (ocirun.engine.syscalls names)
    sc.arch            the ABI the call was made in (ocirun.engine.arch: x86_64, or
                       i386 on an x86_64 host): register slots, pointer size (word)
    sc.spec            its SyscallSpec (None for syscalls with no path role)
    sc.args            list of the 6 argument registers as unsigned ints,
                       as they are now (after the core's rewriting)
    sc.orig_args       the arguments as the guest passed them
    sc.arg_int(i)      args[i] as a signed C int (dirfds, fds, flags)
    sc.guest_paths     {arg index: guest path} of every translated path argument
    sc.host_paths      {arg index: host path} the kernel will see
    sc.set_arg(i, v)   change argument register i (written at once)
    sc.push(data)      copy bytes to scratch memory on the tracee's stack
                       (below the red zone); returns the address. Valid until
                       the syscall returns.
    sc.push_string(s)  push(s.encode() + b"\0")
    sc.skip(result)    at entry: do not run the syscall; the guest sees
                       `result` (e.g. 0, or -errno.EPERM). No exit hooks run.
    sc.want_exit()     at entry: ask for the exit stop (on_exit is called)
    sc.skipped         True once skip() was called
    sc.at_exit         False at entry, True in on_exit
    sc.result          at exit: the return value (signed; -errno on failure)
    sc.set_result(v)   at exit: change what the guest sees
    sc.chain(nr, args) at exit: run syscall `nr` next in the guest, in place of the
                       return (the syscall instruction re-runs); its exit comes back
                       to on_exit with this same object (sc.name unchanged). For
                       syscalls nobody traps (mmap, munmap, close).
    sc.hold()          at entry: leave the tracee stopped (a blocking call emulated
                       in the tracer); later sc.skip(result) and engine.resume(tracee)

Registers: the core does not restore rewritten path pointers at the exit stop
(as PRoot does not): the x86_64 kernel preserves argument registers, so the
guest's register keeps pointing at the translated host path in the scratch
area. Compiled code does not read a pointer back from a syscall's argument
register after a libc call (they are caller-saved across calls), so this costs
nothing and saves one stop per syscall. An extension that changes an argument
and needs it restored asks for want_exit() and restores it with set_arg.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing's, without importing typing (start-up time)
if TYPE_CHECKING:
    from ocirun.engine.multiplex import MuxArgs
    from ocirun.engine.syscalls import SyscallSpec
    from ocirun.engine.tracee import Tracee

_MASK64 = 0xFFFFFFFFFFFFFFFF


class Syscall:
    __slots__ = (
        "tracee", "nr", "name", "spec", "args", "orig_args", "guest_paths", "host_paths",
        "sp", "_scratch", "skipped", "skip_result", "exit_wanted", "at_exit", "_result",
        "seccomp_mode", "notes", "rewritten", "arch", "mux", "chained_nr",
    )

    def __init__(self, tracee: Tracee, nr: int, name: str, spec: SyscallSpec | None,
                 args: list[int], sp: int, seccomp_mode: bool):
        self.tracee = tracee
        self.nr = nr
        self.name = name
        self.spec = spec
        self.args = args
        self.orig_args = tuple(args)
        self.guest_paths: dict[int, str] = {}
        self.host_paths: dict[int, str] = {}
        self.sp = sp
        self.arch = tracee.abi.arch  # the ABI of this call (an x86_64 host also runs i386's)
        self.mux: MuxArgs | None = None  # socketcall: the arguments live in memory (multiplex.py)
        self._scratch = sp - self.arch.red_zone
        self.skipped = False
        self.skip_result = 0
        self.exit_wanted = False
        self.at_exit = False
        self._result = 0
        self.seccomp_mode = seccomp_mode
        self.notes: dict = {}  # the core's own bookkeeping between entry and exit
        self.rewritten: dict[int, tuple[int, int]] | None = None  # arg -> (new value, guest's value)
        self.chained_nr = -1  # chain(): the syscall the guest runs next for this object

    # --- entry ---
    def arg_int(self, i: int) -> int:
        """args[i] as a signed 32-bit C int."""
        v = self.args[i] & 0xFFFFFFFF
        return v - (1 << 32) if v & 0x80000000 else v

    def set_arg(self, i: int, value: int) -> None:
        value &= _MASK64
        self.args[i] = value
        if self.mux is not None:
            if not self.at_exit:
                self.mux.store(self, i, value)
            return
        if not self.at_exit:
            if self.rewritten is None:
                self.rewritten = {}
            self.rewritten[i] = (value, self.orig_args[i])
        arch = self.arch
        if self.at_exit and arch.arg_slots[i] == arch.ret_slot:
            return  # aarch64's x0 holds the result now: restoring the argument would clobber it
        arch.regs.set_arg(self.tracee.pid, i, value)

    def push(self, data: bytes) -> int:
        addr = (self._scratch - len(data)) & ~15
        self.tracee.write(addr, data)
        self._scratch = addr
        return addr

    def push_string(self, s: str | bytes) -> int:
        b = s if isinstance(s, bytes) else s.encode("utf-8", "surrogateescape")
        return self.push(b + b"\0")

    def skip(self, result: int) -> None:
        """Do not run the syscall; the guest sees `result`."""
        regs = self.arch.regs
        pid = self.tracee.pid
        regs.set_nr(pid, -1)
        if self.seccomp_mode:
            regs.set_result(pid, result)
        self.skipped = True
        self.skip_result = result

    def want_exit(self) -> None:
        self.exit_wanted = True

    def hold(self) -> None:
        """Leave the tracee stopped at this entry until engine.resume(tracee)."""
        self.tracee.parked = True

    def chain(self, nr: int, args: tuple[int, ...]) -> None:
        """At exit: make the guest run syscall `nr` with `args` now (the syscall
        instruction runs again with these registers); on_exit sees its result."""
        arch = self.arch
        if not arch.syscall_insn:
            raise OSError(38, f"syscall chaining is not supported on {arch.name}")
        regs = self.tracee.get_regs()
        regs[arch.ip_slot] -= arch.syscall_insn
        regs[arch.call_nr_slot] = nr
        for slot, value in zip(arch.arg_slots, args, strict=True):
            regs[slot] = value & _MASK64
        self.tracee.set_regs(regs)
        self.chained_nr = nr
        self.exit_wanted = True

    # --- exit ---
    @property
    def result(self) -> int:
        return self._result

    def set_result(self, value: int) -> None:
        self._result = value
        self.arch.regs.set_result(self.tracee.pid, value)

    def __repr__(self) -> str:
        return f"Syscall({self.name}, pid={self.tracee.pid}, paths={self.guest_paths})"
