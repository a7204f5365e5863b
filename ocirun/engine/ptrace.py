"""Raw ctypes wrappers for ptrace, waitpid and process_vm_readv/writev.

Why not python-ptrace here: its debugger loop costs ~3x the CPU per stop
(DESIGN.md). Everything in this module is a thin call into libc with
preallocated ctypes buffers, so one tracer stop is a handful of C calls.

Architecture facts (register slots, syscall ABI) live in ocirun/engine/arch/.
"""

from __future__ import annotations

import ctypes
import os

libc = ctypes.CDLL(None, use_errno=True)

_ptrace = libc.ptrace
_ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
_ptrace.restype = ctypes.c_long

_waitpid = libc.waitpid
_waitpid.argtypes = [ctypes.c_int, ctypes.POINTER(ctypes.c_int), ctypes.c_int]
_waitpid.restype = ctypes.c_int


class iovec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


_vm_readv = libc.process_vm_readv
_vm_readv.argtypes = [
    ctypes.c_int,
    ctypes.POINTER(iovec),
    ctypes.c_ulong,
    ctypes.POINTER(iovec),
    ctypes.c_ulong,
    ctypes.c_ulong,
]
_vm_readv.restype = ctypes.c_ssize_t
_vm_writev = libc.process_vm_writev
_vm_writev.argtypes = _vm_readv.argtypes
_vm_writev.restype = ctypes.c_ssize_t

# --- requests, options, events (linux/ptrace.h) ---
PTRACE_PEEKUSER = 3
PTRACE_POKEUSER = 6
PTRACE_CONT = 7
PTRACE_KILL = 8
PTRACE_SINGLESTEP = 9
PTRACE_GETREGS = 12
PTRACE_SETREGS = 13
PTRACE_SYSCALL = 24
PTRACE_SETOPTIONS = 0x4200
PTRACE_GETEVENTMSG = 0x4201
PTRACE_GETSIGINFO = 0x4202
PTRACE_SEIZE = 0x4206
PTRACE_INTERRUPT = 0x4207
PTRACE_LISTEN = 0x4208
PTRACE_GET_SYSCALL_INFO = 0x420E

PTRACE_O_TRACESYSGOOD = 0x1
PTRACE_O_TRACEFORK = 0x2
PTRACE_O_TRACEVFORK = 0x4
PTRACE_O_TRACECLONE = 0x8
PTRACE_O_TRACEEXEC = 0x10
PTRACE_O_TRACEVFORKDONE = 0x20
PTRACE_O_TRACEEXIT = 0x40
PTRACE_O_TRACESECCOMP = 0x80
PTRACE_O_EXITKILL = 0x100000

PTRACE_EVENT_FORK = 1
PTRACE_EVENT_VFORK = 2
PTRACE_EVENT_CLONE = 3
PTRACE_EVENT_EXEC = 4
PTRACE_EVENT_VFORK_DONE = 5
PTRACE_EVENT_EXIT = 6
PTRACE_EVENT_SECCOMP = 7
PTRACE_EVENT_STOP = 128

SYSCALL_INFO_NONE = 0
SYSCALL_INFO_ENTRY = 1
SYSCALL_INFO_EXIT = 2
SYSCALL_INFO_SECCOMP = 3

WALL = 0x40000000
WNOHANG = 1

SEIZE_OPTIONS = (
    PTRACE_O_EXITKILL
    | PTRACE_O_TRACESECCOMP
    | PTRACE_O_TRACEFORK
    | PTRACE_O_TRACEVFORK
    | PTRACE_O_TRACECLONE
    | PTRACE_O_TRACEEXEC
    | PTRACE_O_TRACESYSGOOD
)


class PtraceError(OSError):
    pass


def _err(what: str) -> PtraceError:
    e = ctypes.get_errno()
    return PtraceError(e, f"{what}: {os.strerror(e)}")


def ptrace(req: int, pid: int, addr: int = 0, data: int = 0) -> int:
    r = _ptrace(req, pid, addr, data)
    if r == -1:
        e = ctypes.get_errno()
        if e:
            raise PtraceError(e, f"ptrace({req:#x}, {pid}): {os.strerror(e)}")
    return r


def seize(pid: int, options: int = SEIZE_OPTIONS) -> None:
    ptrace(PTRACE_SEIZE, pid, 0, options)


def cont(pid: int, sig: int = 0) -> int:
    return _ptrace(PTRACE_CONT, pid, 0, sig)


def syscall(pid: int, sig: int = 0) -> int:
    return _ptrace(PTRACE_SYSCALL, pid, 0, sig)


def resume(req: int, pid: int, sig: int = 0) -> int:
    """A restarting request (PTRACE_CONT, PTRACE_SYSCALL, PTRACE_SINGLESTEP...): 0 or -1."""
    return _ptrace(req, pid, 0, sig)


def request(req: int, pid: int, addr: int = 0, data: int = 0) -> tuple[int, int]:
    """One ptrace request as made for a guest tracer: (libc's return value, errno or 0)."""
    ctypes.set_errno(0)
    r = _ptrace(req, pid, addr, data)
    return r, ctypes.get_errno() if r == -1 else 0


def listen(pid: int) -> int:
    return _ptrace(PTRACE_LISTEN, pid, 0, 0)


_msg = ctypes.c_ulong()


def geteventmsg(pid: int) -> int:
    if _ptrace(PTRACE_GETEVENTMSG, pid, 0, ctypes.addressof(_msg)) == -1:
        raise _err("PTRACE_GETEVENTMSG")
    return _msg.value


_siginfo = ctypes.create_string_buffer(128)


def getsiginfo(pid: int) -> bytes:
    """PTRACE_GETSIGINFO: the siginfo_t of the signal a signal-delivery-stop is for."""
    if _ptrace(PTRACE_GETSIGINFO, pid, 0, ctypes.addressof(_siginfo)) == -1:
        raise _err("PTRACE_GETSIGINFO")
    return _siginfo.raw


def poke_user(pid: int, slot: int, value: int) -> None:
    """Write one register (slot index of user_regs_struct)."""
    if _ptrace(PTRACE_POKEUSER, pid, slot * 8, value & 0xFFFFFFFFFFFFFFFF) == -1:
        raise _err("PTRACE_POKEUSER")


def peek_user(pid: int, slot: int) -> int:
    ctypes.set_errno(0)
    r = _ptrace(PTRACE_PEEKUSER, pid, slot * 8, 0)
    if r == -1 and ctypes.get_errno():
        raise _err("PTRACE_PEEKUSER")
    return r & 0xFFFFFFFFFFFFFFFF


def get_regs(pid: int, nregs: int = 27) -> list[int]:
    buf = (ctypes.c_ulonglong * nregs)()
    if _ptrace(PTRACE_GETREGS, pid, 0, ctypes.addressof(buf)) == -1:
        raise _err("PTRACE_GETREGS")
    return list(buf)


def set_regs(pid: int, regs: list[int]) -> None:
    buf = (ctypes.c_ulonglong * len(regs))(*[r & 0xFFFFFFFFFFFFFFFF for r in regs])
    if _ptrace(PTRACE_SETREGS, pid, 0, ctypes.addressof(buf)) == -1:
        raise _err("PTRACE_SETREGS")


class SyscallInfo(ctypes.Structure):
    """struct ptrace_syscall_info (entry/seccomp layout; exit uses rval/is_error)."""

    _fields_ = [
        ("op", ctypes.c_uint8),
        ("pad", ctypes.c_uint8 * 3),
        ("arch", ctypes.c_uint32),
        ("ip", ctypes.c_uint64),
        ("sp", ctypes.c_uint64),
        ("nr", ctypes.c_uint64),  # exit: rval (signed)
        ("args", ctypes.c_uint64 * 6),  # exit: args[0] low byte = is_error
        ("ret_data", ctypes.c_uint32),
        ("pad2", ctypes.c_uint32),
    ]


_info = SyscallInfo()
_info_addr = ctypes.addressof(_info)
_info_size = ctypes.sizeof(SyscallInfo)


def syscall_info(pid: int) -> SyscallInfo:
    """PTRACE_GET_SYSCALL_INFO into a shared buffer: copy what you keep."""
    if _ptrace(PTRACE_GET_SYSCALL_INFO, pid, _info_size, _info_addr) == -1:
        raise _err("PTRACE_GET_SYSCALL_INFO")
    return _info


def info_buffer() -> tuple[int, int]:
    """Address and size of the buffer syscall_info fills: the compiled fast path leaves
    there what it read of a stop it hands over (ocirun/engine/_fastpath.c)."""
    return _info_addr, _info_size


def last_info() -> SyscallInfo:
    """The buffer as it is (the fast path's read of the current stop)."""
    return _info


_status = ctypes.c_int()
_status_ref = ctypes.byref(_status)


def waitpid(pid: int = -1, options: int = WALL) -> tuple[int, int]:
    """waitpid; returns (pid, status); (-errno, 0) on failure (EINTR, ECHILD)."""
    r = _waitpid(pid, _status_ref, options)
    if r == -1:
        return -ctypes.get_errno(), 0
    return r, _status.value


PAGE = os.sysconf("SC_PAGE_SIZE")
_RBUF_SIZE = PAGE * 2
_rbuf = ctypes.create_string_buffer(_RBUF_SIZE)
_rbuf_addr = ctypes.addressof(_rbuf)
_local = iovec()
_remote = iovec()
_local_ref = ctypes.byref(_local)
_remote_ref = ctypes.byref(_remote)
FIRST_CHUNK = 256  # most paths fit: read more only when no NUL is in it


def read_mem(pid: int, addr: int, size: int) -> bytes:
    """Read `size` bytes of the tracee's memory (may return fewer at an unmapped page)."""
    if size <= 0:
        return b""
    if size <= _RBUF_SIZE:
        _local.iov_base = _rbuf_addr
        base = _rbuf_addr
    else:
        big = ctypes.create_string_buffer(size)
        base = _local.iov_base = ctypes.addressof(big)
    _local.iov_len = size
    _remote.iov_base = addr
    _remote.iov_len = size
    n = _vm_readv(pid, _local_ref, 1, _remote_ref, 1, 0)
    if n < 0:
        e = ctypes.get_errno()
        # a read crossing into an unmapped page fails whole: retry up to the page end
        end = (addr | (PAGE - 1)) + 1
        if e == 14 and addr + size > end:  # EFAULT
            return read_mem(pid, addr, end - addr)
        raise PtraceError(e, f"process_vm_readv({pid}, {addr:#x}): {os.strerror(e)}")
    return ctypes.string_at(base, n)


def read_cstring(pid: int, addr: int, limit: int = 4096) -> bytes:
    """Read a NUL-terminated string, page by page (never across an unmapped page)."""
    end = (addr | (PAGE - 1)) + 1
    chunk = read_mem(pid, addr, min(end - addr, FIRST_CHUNK, limit))
    i = chunk.find(b"\0")
    if i >= 0:
        return chunk[:i]
    out = chunk
    addr += len(chunk)
    while chunk and len(out) < limit:
        end = (addr | (PAGE - 1)) + 1
        chunk = read_mem(pid, addr, min(end - addr, limit - len(out)))
        if not chunk:
            break
        i = chunk.find(b"\0")
        if i >= 0:
            return out + chunk[:i]
        out += chunk
        addr += len(chunk)
    return out


_WBUF_SIZE = PAGE * 2
_wbuf = ctypes.create_string_buffer(_WBUF_SIZE)
_wbuf_addr = ctypes.addressof(_wbuf)
_memmove = ctypes.memmove


def write_mem(pid: int, addr: int, data: bytes) -> None:
    size = len(data)
    if size <= _WBUF_SIZE:
        _memmove(_wbuf_addr, data, size)
        _local.iov_base = _wbuf_addr
    else:
        big = ctypes.create_string_buffer(data, size)
        _local.iov_base = ctypes.addressof(big)
    _local.iov_len = size
    _remote.iov_base = addr
    _remote.iov_len = size
    n = _vm_writev(pid, _local_ref, 1, _remote_ref, 1, 0)
    if n != size:
        e = ctypes.get_errno() if n < 0 else 14
        raise PtraceError(e, f"process_vm_writev({pid}, {addr:#x}): {os.strerror(e)}")


SIGTRAP = 5
SYSGOOD_TRAP = SIGTRAP | 0x80


PTRACE_GETREGSET = 0x4204
PTRACE_SETREGSET = 0x4205


class _IoVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


def get_regset(pid: int, note: int, nwords: int) -> list[int]:
    """PTRACE_GETREGSET of `note` (e.g. NT_PRSTATUS) as 8-byte words."""
    buf = (ctypes.c_ulonglong * nwords)()
    iov = _IoVec(ctypes.addressof(buf), ctypes.sizeof(buf))
    if _ptrace(PTRACE_GETREGSET, pid, note, ctypes.addressof(iov)) == -1:
        raise _err("PTRACE_GETREGSET")
    return list(buf)


def set_regset(pid: int, note: int, words: list[int]) -> None:
    buf = (ctypes.c_ulonglong * len(words))(*[w & 0xFFFFFFFFFFFFFFFF for w in words])
    iov = _IoVec(ctypes.addressof(buf), ctypes.sizeof(buf))
    if _ptrace(PTRACE_SETREGSET, pid, note, ctypes.addressof(iov)) == -1:
        raise _err("PTRACE_SETREGSET")


def set_regset_int(pid: int, note: int, value: int) -> None:
    """PTRACE_SETREGSET of a one-int regset (aarch64's NT_ARM_SYSTEM_CALL)."""
    buf = ctypes.c_int(value)
    iov = _IoVec(ctypes.addressof(buf), 4)
    if _ptrace(PTRACE_SETREGSET, pid, note, ctypes.addressof(iov)) == -1:
        raise _err("PTRACE_SETREGSET")
