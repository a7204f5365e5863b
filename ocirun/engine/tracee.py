"""Per-process state of a traced guest process or thread (PRoot's tracee).

What an extension may use on a Tracee:

    tracee.pid            thread id (== process id for a process' main thread)
    tracee.parent         the Tracee that created it (None for the first one)
    tracee.exe            guest path of the program it runs (what /proc/self/exe shows)
    tracee.engine         what extensions see of the tracer (ocirun.engine.extension.Engine)
    tracee.view           what this tracee sees (ocirun.engine.view.View): .to_host, .to_guest
    tracee.data           dict for extensions' own per-tracee state (copied on fork)
    tracee.read(addr, n) / tracee.write(addr, data)      raw memory
    tracee.read_string(addr) -> str                      NUL-terminated string (surrogateescape)
    tracee.read_u64(addr) / write_u64(addr, v) / read_u32 / write_u32
    tracee.read_word(addr) / write_word(addr, v)          a pointer-sized word (4 bytes for i386)
    tracee.get_regs() / tracee.set_regs(regs)             whole user_regs_struct (list of ints)
    tracee.get_reg(slot) / tracee.set_reg(slot, value)    one register (slots: tracee.abi.arch)
    tracee.abi            the syscall ABI of the program it runs (ocirun.engine.syscalls.Abi:
                          .arch, .names): x86_64, or i386 for a 32-bit program on x86_64
    tracee.guest_cwd()                                    current guest working directory
    tracee.fd_guest_path(fd) -> str | None                guest path an fd refers to

Threads created with CLONE_FS share one FsState (the working directory cache),
like the kernel's fs_struct. The guest cwd is not tracked by following chdir
results: it is read back from /proc/PID/cwd (the kernel's own, symlink-free
answer) and translated to a guest path, then cached until the next chdir or
fchdir of a process sharing it. That needs no exit stop for chdir/fchdir, and
matches Linux after the directory is removed.
"""

from __future__ import annotations

import os
import struct

from ocirun.engine import ptrace as pt
from ocirun.util.records import dataclass, field

TYPE_CHECKING = False  # typing's, without importing typing (start-up time)
if TYPE_CHECKING:
    from typing import Any

    from ocirun.engine.extension import Engine
    from ocirun.engine.syscall import Syscall
    from ocirun.engine.syscalls import Abi
    from ocirun.engine.view import View

ENC = "surrogateescape"


NAMED_DIRS = 8  # guest names remembered per FsState (a failed chdir adds one too)


@dataclass
class FsState:
    """Shared by CLONE_FS threads: the cached guest cwd (None = read /proc again)."""

    cwd: str | None = None
    host_cwd: str | None = None  # the kernel's view of the same directory
    users: int = 1
    # host directory -> the guest path last used to enter it by name (of two bindings of
    # one host directory, the one the process used); a few entries, newest last
    named: dict[str, str] = field(default_factory=dict)
    changes: int = 0  # chdir/fchdir entries seen (invalidate_cwd)
    # a forked child's, when its parent's cwd was not known: the parent's FsState and its
    # changes then (the child's cwd is the parent's while neither changed it, fastpath.mirror_cwd)
    origin: tuple[FsState, int] | None = None

    def name_cwd(self, host: str, guest: str) -> None:
        named = self.named
        named.pop(host, None)
        named[host] = guest
        if len(named) > NAMED_DIRS:
            del named[next(iter(named))]


@dataclass(eq=False)
class Tracee:
    pid: int
    engine: Engine
    parent: Tracee | None = None
    fs: FsState = field(default_factory=FsState)
    exe: str = ""
    view: View = None  # type: ignore[assignment]  # set by the tracer before the first stop
    data: dict[str, Any] = field(default_factory=dict)
    abi: Abi = None  # type: ignore[assignment]  # set by the tracer: the host's, or that of the last stop
    # loop state
    seen_first_stop: bool = False
    sc: Syscall | None = None  # the syscall between its entry and exit stops
    in_syscall: bool = False  # PTRACE_SYSCALL mode: next syscall stop is an exit
    pending_exe: str | None = None  # set by an execve entry; becomes exe at the exec event
    pending_loader: tuple[int, list[str]] | None = None
    loader_words: tuple[int, list[str]] | None = None  # ExecPlan.loader_words of the running program
    exited: bool = False
    tgid: int = 0  # thread group id (the process id); 0 until known = pid
    forked: bool = False  # its parent's fork/clone event was seen
    held: bool = False  # first stop seen before the parent's event: resumed at that event
    parked: bool = False  # an extension holds it at a syscall entry (Syscall.hold)
    last_rewrite: tuple[int, dict[int, tuple[int, int]]] | None = None  # (nr, {arg: (scratch, guest ptr)})
    resume_request: int = 0  # how the core resumes it (PTRACE_SYSCALL, _SINGLESTEP); 0: its own choice
    entry_deferred: bool = False  # no-seccomp mode: kept at a syscall entry before the core's work
    status: int = 0  # the wait status of its end (at on_process_exit)

    # --- memory ---
    def read(self, addr: int, size: int) -> bytes:
        return pt.read_mem(self.pid, addr, size)

    def write(self, addr: int, data: bytes) -> None:
        pt.write_mem(self.pid, addr, data)

    def read_string(self, addr: int, limit: int = 4096) -> str:
        return pt.read_cstring(self.pid, addr, limit).decode("utf-8", ENC)

    def read_u64(self, addr: int) -> int:
        return struct.unpack("<Q", self.read(addr, 8))[0]

    def write_u64(self, addr: int, value: int) -> None:
        self.write(addr, struct.pack("<Q", value & 0xFFFFFFFFFFFFFFFF))

    def read_word(self, addr: int) -> int:
        return self.read_u32(addr) if self.abi.arch.word == 4 else self.read_u64(addr)

    def write_word(self, addr: int, value: int) -> None:
        if self.abi.arch.word == 4:
            self.write_u32(addr, value)
        else:
            self.write_u64(addr, value)

    def read_u32(self, addr: int) -> int:
        return struct.unpack("<I", self.read(addr, 4))[0]

    def write_u32(self, addr: int, value: int) -> None:
        self.write(addr, struct.pack("<I", value & 0xFFFFFFFF))

    # --- registers ---
    def get_regs(self) -> list[int]:
        return self.abi.arch.regs.get_all(self.pid)

    def set_regs(self, regs: list[int]) -> None:
        self.abi.arch.regs.set_all(self.pid, regs)

    def get_reg(self, slot: int) -> int:
        return self.abi.arch.regs.get(self.pid, slot)

    def set_reg(self, slot: int, value: int) -> None:
        self.abi.arch.regs.set(self.pid, slot, value)

    # --- file system view ---
    def guest_cwd(self) -> str:
        """The guest working directory (cached; refreshed from /proc after chdir)."""
        cwd = self.fs.cwd
        if cwd is None:
            try:
                host = os.readlink(f"/proc/{self.pid}/cwd")
            except OSError:
                host = ""
            if host.endswith(" (deleted)"):
                self.fs.host_cwd = None
                return self.view.to_guest(host[: -len(" (deleted)")]) or "/"
            cwd = self.cwd_of(host) or "/"
            self.fs.host_cwd = host or None
            if self.fs.users == 1:
                self.fs.cwd = cwd
        return cwd

    def cwd_of(self, host: str) -> str | None:
        """The guest path of the working directory at `host` (the kernel's /proc/PID/cwd)."""
        guest = self.fs.named.get(host)
        return guest if guest is not None else self.view.to_guest(host)

    def host_cwd(self) -> str | None:
        """The host path of the working directory, as the kernel resolves relative paths."""
        if self.fs.cwd is None or self.fs.users != 1:
            self.guest_cwd()
        return self.fs.host_cwd

    def fd_host_path(self, fd: int) -> str | None:
        try:
            return os.readlink(f"/proc/{self.pid}/fd/{fd}")
        except OSError:
            return None

    def fd_guest_path(self, fd: int) -> str | None:
        host = self.fd_host_path(fd)
        if host is None or not host.startswith("/"):
            return None
        if host.endswith(" (deleted)"):
            host = host[: -len(" (deleted)")]
        return self.view.to_guest(host)

    def invalidate_cwd(self) -> None:
        self.fs.changes += 1
        self.fs.cwd = None
        self.fs.host_cwd = None
        fast = self.view.engine.fast
        if fast is not None:  # the compiled fast path's copy (ocirun/engine/fastpath.py)
            fast.forget_cwd(self.pid)

    def __post_init__(self) -> None:
        if not self.tgid:
            self.tgid = self.pid

    def __repr__(self) -> str:
        return f"Tracee(pid={self.pid}, exe={self.exe!r})"
