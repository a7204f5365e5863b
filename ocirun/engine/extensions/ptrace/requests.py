"""The ptrace requests a guest tracer makes on a tracee kept in a stop for it, made by
the engine (its real tracer) on the guest tracer's behalf: the data the request reads
or writes is copied from or to the guest tracer's memory.

Each entry of FORWARDED says how a request moves its data (the raw syscall's
convention, not libc's: PEEK* store the word at `data`):
  peek      the word read is stored at `data`
  plain     addr and data go as they are
  out N     the kernel fills N bytes, copied to the tracer at `data`
  in N      N bytes of the tracer at `data` go to the kernel
  out@addr / in@addr   the size is `addr` (PTRACE_GET_SYSCALL_INFO, *SIGMASK)
  regset    `data` is the tracer's struct iovec (PTRACE_GETREGSET/SETREGSET)
"""

from __future__ import annotations

import ctypes
import errno
import struct

from ocirun.engine import ptrace as pt

TYPE_CHECKING = False  # typing's, without importing typing (start-up time)
if TYPE_CHECKING:
    from ocirun.engine.tracee import Tracee

TRACEME, PEEKTEXT, PEEKDATA, PEEKUSER, POKETEXT, POKEDATA, POKEUSER, CONT, KILL, SINGLESTEP = range(10)
ATTACH, DETACH, SYSCALL, SINGLEBLOCK, SYSEMU, SYSEMU_SINGLESTEP = 16, 17, 24, 33, 31, 32
SETOPTIONS, SEIZE, INTERRUPT, LISTEN = 0x4200, 0x4206, 0x4207, 0x4208
GETREGSET, SETREGSET = 0x4204, 0x4205
ARCH_PRCTL = 30
ARCH_GET_FS, ARCH_GET_GS = 0x1003, 0x1004
MAX_BUFFER = 1 << 16

# the restarting requests -> how the engine resumes the tracee (0: as it would itself)
RESTART = {CONT: 0, SYSCALL: pt.PTRACE_SYSCALL, SINGLESTEP: pt.PTRACE_SINGLESTEP,
           SINGLEBLOCK: SINGLEBLOCK, SYSEMU: SYSEMU, SYSEMU_SINGLESTEP: SYSEMU_SINGLESTEP}

FORWARDED: dict[int, tuple[str, int]] = {
    PEEKTEXT: ("peek", 0), PEEKDATA: ("peek", 0), PEEKUSER: ("peek", 0),
    POKETEXT: ("plain", 0), POKEDATA: ("plain", 0), POKEUSER: ("plain", 0),
    12: ("out", 27 * 8), 13: ("in", 27 * 8),  # GETREGS, SETREGS (x86_64 user_regs_struct)
    14: ("out", 512), 15: ("in", 512),  # GETFPREGS, SETFPREGS (user_fpregs_struct)
    25: ("out", 16), 26: ("in", 16),  # GET_THREAD_AREA, SET_THREAD_AREA (struct user_desc)
    0x4201: ("out", 8),  # GETEVENTMSG
    0x4202: ("out", 128), 0x4203: ("in", 128),  # GETSIGINFO, SETSIGINFO
    0x420A: ("out@addr", 0), 0x420B: ("in@addr", 0),  # GETSIGMASK, SETSIGMASK
    0x420E: ("out@addr", 0),  # GET_SYSCALL_INFO
    GETREGSET: ("regset", 0), SETREGSET: ("regset", 0),
}


def forward(tracer: Tracee, req: int, tid: int, addr: int, data: int) -> int:
    """Make request `req` on thread `tid` for `tracer`: the syscall's result (-errno)."""
    how, size = FORWARDED[req]
    try:
        if how == "peek":
            word, err = pt.request(req, tid, addr, 0)
            if err:
                return -err
            tracer.write_u64(data, word)
            return 0
        if how == "plain":
            return _result(pt.request(req, tid, addr, data))
        if how == "regset":
            return _regset(tracer, req, tid, addr, data)
        if how.endswith("@addr"):
            size, addr = addr, 0
            if size > MAX_BUFFER:
                return -errno.EINVAL
        buf = ctypes.create_string_buffer(size)
        if how.startswith("in"):
            buf.raw = tracer.read(data, size).ljust(size, b"\0")
        r, err = pt.request(req, tid, addr if how in ("out", "in") else size, ctypes.addressof(buf))
        if err:
            return -err
        if how.startswith("out"):
            n = min(size, r) if how == "out@addr" else size
            tracer.write(data, buf.raw[:n])
        return r
    except OSError as exc:
        return -(exc.errno or errno.EFAULT)


def arch_prctl(tracer: Tracee, tid: int, addr: int, code: int) -> int:
    """PTRACE_ARCH_PRCTL (x86_64): ARCH_GET_FS/GS store the base at `addr`."""
    if code not in (ARCH_GET_FS, ARCH_GET_GS):
        return _result(pt.request(ARCH_PRCTL, tid, addr, code))
    value = ctypes.c_ulong()
    r, err = pt.request(ARCH_PRCTL, tid, ctypes.addressof(value), code)
    if err:
        return -err
    try:
        tracer.write_u64(addr, value.value)
    except OSError:
        return -errno.EFAULT
    return r


def _regset(tracer: Tracee, req: int, tid: int, note: int, iov_addr: int) -> int:
    base, length = struct.unpack("<QQ", tracer.read(iov_addr, 16).ljust(16, b"\0"))
    length = min(length, MAX_BUFFER)
    buf = ctypes.create_string_buffer(length)
    if req == SETREGSET:
        buf.raw = tracer.read(base, length).ljust(length, b"\0")
    iov = pt.iovec(ctypes.addressof(buf), length)
    r, err = pt.request(req, tid, note, ctypes.addressof(iov))
    if err:
        return -err
    if req == GETREGSET:
        tracer.write(base, buf.raw[: iov.iov_len])
        tracer.write_u64(iov_addr + 8, iov.iov_len)
    return r


def _result(r: tuple[int, int]) -> int:
    value, err = r
    return -err if err else value
