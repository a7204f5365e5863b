"""Syscalls a host seccomp policy answers with SIGSYS (Android's app filter).

Android's filter answers most calls an app may not make with SECCOMP_RET_TRAP, and a
TRAP outranks the engine's own SECCOMP_RET_TRACE: the tracer never gets the call's
seccomp stop, only the stop of the SIGSYS the kernel sends (si_code SYS_SECCOMP,
si_syscall, si_arch; the call did not run and its registers are as the guest made it,
the instruction pointer past the syscall instruction). At that stop:

- a call the engine traps is run through the same entry as at a seccomp stop (path
  translation, the kind's handler, the extensions). If the engine answers it itself
  (Syscall.skip: SysV IPC, `-0`'s set*id/setgroups/chown/chmod..., link under
  link2symlink) the guest gets that answer and no signal. If an extension turned it
  into another call (shmat into openat, shmdt into munmap), the syscall instruction
  runs again as that call (as Syscall.chain does), its exit back to the same object.
  If the engine would have let the kernel run it, its registers are put back;
- a call a kernel may lack, by its age or its configuration, which programs expect to
  fail and do without (`FALLBACK`: glibc's clone3, faccessat2, rseq, close_range;
  keyctl, io_uring, NUMA's mbind...) fails with ENOSYS instead of killing the caller,
  unless the caller catches SIGSYS (a sandbox with a TRAP filter of its own, whose
  handler answers the call, gets its signal);
- any other call: the SIGSYS is delivered as it is (natively the caller dies, 159).

Termux's PRoot answers ENOSYS to every call it does not handle, which also hides from a
program a refusal it may not survive, and it rewrites some legacy calls into their *at
forms (open into openat, for 32-bit ARM guests; aarch64 has no legacy calls).

In the ptrace-only mode (OCIRUN_NO_SECCOMP=1) the tracer sees every call before the
host's filter, so emulated calls never trap; a call the engine skipped reaches the
filter as number -1, which an allow-list filter traps too: that SIGSYS is the engine's
own doing and is dropped (the result was set at the exit stop). A call the engine let
through and the filter trapped comes to its exit stop unrun, the SIGSYS pending: its
arguments are given back to the guest there (`refused_at_exit`), as glibc reuses them
for its fallback (faccessat2's path pointer for faccessat), and no exit hook runs.
"""

from __future__ import annotations

import _signal as signal  # the C module: `signal` builds its enums at import (~2 ms a start)
import errno
import struct

from ocirun.engine import ptrace as pt

TYPE_CHECKING = False  # typing's, without importing typing (start-up time)
if TYPE_CHECKING:
    from ocirun.engine.arch.base import Arch
    from ocirun.engine.loop import Tracer
    from ocirun.engine.syscall import Syscall
    from ocirun.engine.tracee import Tracee

SYS_SECCOMP = 1  # si_code of a SIGSYS sent by a seccomp filter
_SIGSYS_BIT = 1 << (signal.SIGSYS - 1)
_SIGSYS_FIELDS = struct.Struct("<iii4xQiI")  # si_signo, si_errno, si_code, _call_addr, _syscall, _arch

# calls a kernel may lack, by its age or its configuration, which programs must expect
# to fail with ENOSYS and do without: answered so when trapped
FALLBACK = frozenset({
    # newer than some kernels (glibc, coreutils, systemd... fall back)
    "clone3", "faccessat2", "fchmodat2", "openat2", "statx", "close_range", "rseq",
    "set_robust_list", "copy_file_range", "epoll_pwait2", "pidfd_open", "pidfd_send_signal",
    "pidfd_getfd", "memfd_secret", "landlock_create_ruleset", "futex_waitv", "mount_setattr",
    "process_madvise", "map_shadow_stack", "cachestat", "membarrier",
    # a configuration option (keys, io_uring, NUMA, perf, bpf, userfaultfd, kcmp, fanotify)
    "keyctl", "add_key", "request_key", "io_uring_setup", "io_uring_enter", "io_uring_register",
    "get_mempolicy", "set_mempolicy", "mbind", "migrate_pages", "move_pages", "perf_event_open",
    "bpf", "userfaultfd", "kcmp", "fanotify_init",
})


def trapped_call(pid: int) -> tuple[int, int] | None:
    """(syscall number, AUDIT_ARCH) of a SIGSYS a seccomp filter sent, else None."""
    try:
        info = pt.getsiginfo(pid)
    except OSError:
        return None
    signo, _errno, code, _addr, nr, arch = _SIGSYS_FIELDS.unpack_from(info)
    if signo != signal.SIGSYS or code != SYS_SECCOMP:
        return None
    return nr, arch


def answer_sigsys(tracer: Tracer, t: Tracee) -> bool:
    """At a SIGSYS's signal-delivery-stop: True if the call was answered (the tracee is
    resumed without the signal), False if the signal goes on as usual."""
    call = trapped_call(t.pid)
    if call is None:
        return False
    nr, audit_arch = call
    if nr == -1 and not tracer.use_seccomp:
        tracer._resume(t)  # a call the engine skipped, seen by the filter as -1
        return True
    abi = tracer.abis.get(audit_arch)
    if abi is None:
        return False
    if tracer.use_seccomp and nr in abi.trapped and _emulate(tracer, t, nr, audit_arch):
        return True
    if abi.nr_names.get(nr) in FALLBACK and not _signal_mask(t.pid, b"SigCgt:") & _SIGSYS_BIT:
        _answer(t, abi.arch, -errno.ENOSYS)
        tracer._resume(t)
        return True
    return False


def _emulate(tracer: Tracer, t: Tracee, nr: int, audit_arch: int) -> bool:
    """Run the call's entry at the signal stop; True if the engine answered or rewrote it."""
    arch = tracer.abis[audit_arch].arch
    try:
        saved = arch.regs.get_all(t.pid)
    except OSError:
        return False
    t.sc = None
    try:
        arch.regs.set_nr(t.pid, nr)
        sc = tracer._enter(t, _stop_info(arch, saved, nr, audit_arch), trapped=True)
    except Exception as exc:  # a bug here must not take the guest down
        answered = t.sc is not None
        tracer.faults.handle(t, exc)  # answers EIO once the call's object exists
        if not answered:
            _restore(t, arch, saved)
            return False
        tracer._resume(t)
        return True
    if sc is None:
        _restore(t, arch, saved)
        return False
    if t.parked:  # held (semop...): answered later, resumed by Engine.resume without the signal
        return True
    if sc.skipped:
        t.sc = None
        tracer._resume(t)
        return True
    now = arch.regs.get_nr(t.pid)
    if now != nr and arch.syscall_insn:
        _run_again(tracer, t, sc, now)
        return True
    t.sc = None
    _restore(t, arch, saved)
    return False


def _restore(t: Tracee, arch: Arch, regs: list[int]) -> None:
    """The registers as the guest made the call (the SIGSYS goes on as if untouched)."""
    try:
        arch.regs.set_all(t.pid, regs)
    except OSError:
        pass


def _stop_info(arch: Arch, regs: list[int], nr: int, audit_arch: int) -> pt.SyscallInfo:
    """What PTRACE_GET_SYSCALL_INFO would have said at the call's seccomp stop."""
    info = pt.SyscallInfo()
    info.op = pt.SYSCALL_INFO_SECCOMP
    info.arch = audit_arch
    info.ip = regs[arch.ip_slot]
    info.sp = regs[arch.sp_slot]
    info.nr = nr
    for i, slot in enumerate(arch.arg_slots):
        info.args[i] = regs[slot]
    return info


def _run_again(tracer: Tracer, t: Tracee, sc: Syscall, nr: int) -> None:
    """The call an extension made of the trapped one runs now: the syscall instruction
    again, with the number and arguments the entry left; its stops come back to `sc`."""
    tracer.every_stop_in_python()  # its seccomp stop must reach sc, not the fast path
    regs = t.get_regs()
    regs[sc.arch.ip_slot] -= sc.arch.syscall_insn
    regs[sc.arch.call_nr_slot] = nr
    t.set_regs(regs)
    sc.chained_nr = nr
    sc.exit_wanted = True  # its exit stop ends the chain (Tracer._exit)
    t.sc = sc
    tracer._resume(t)


def _answer(t: Tracee, arch: Arch, result: int) -> None:
    arch.regs.set_nr(t.pid, -1)  # no restart of the call after the stop
    arch.regs.set_result(t.pid, result & 0xFFFFFFFFFFFFFFFF)


def refused_at_exit(t: Tracee, sc: Syscall, result: int) -> bool:
    """No-seccomp mode, at an exit stop: True if the host's filter trapped the call (its
    SIGSYS pending, the register rolled back to the number (x86) or first argument
    (aarch64)); the guest's arguments are then back in their registers."""
    if result != sc.nr and result != sc.arg_int(0) and result != sc.orig_args[0]:
        return False
    if not _signal_mask(t.pid, b"SigPnd:") & _SIGSYS_BIT:
        return False
    for i, (_now, guest) in (sc.rewritten or {}).items():
        sc.arch.regs.set_arg(t.pid, i, guest)
    return True


def _signal_mask(tid: int, field: bytes) -> int:
    """A signal mask of thread `tid` from /proc (SigPnd: its own pending signals; SigCgt:
    those its process catches); 0 if it cannot be read."""
    try:
        with open(f"/proc/{tid}/status", "rb") as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1], 16)
    except (OSError, ValueError):
        pass
    return 0
