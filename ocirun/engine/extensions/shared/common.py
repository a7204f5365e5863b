"""Small helpers the extensions share: the file a syscall acts on, umask, auxv, restart."""

from __future__ import annotations

import errno
import functools
import os
import struct
import sys
from collections.abc import Callable

from ocirun.util.linux import AT_EMPTY_PATH, AT_FDCWD, AT_NULL

TYPE_CHECKING = False  # typing's, without importing typing (start-up time)
if TYPE_CHECKING:
    from typing import Any

    from ocirun.engine.syscall import Syscall
    from ocirun.engine.tracee import Tracee



def report_error(tracee: Tracee, sc: Syscall, exc: Exception) -> None:
    """An extension hook failed on the host side (tracee gone, memory unreadable...):
    the syscall goes on unchanged; say so only when asked (-v 1 and more)."""
    if tracee.engine.verbose >= 1:
        print(f"ocirun: [{tracee.pid}] {sc.name}: extension: {exc}", file=sys.stderr)


Hook = Callable[["Any", "Tracee", "Syscall"], None]


def host_errors_reported(*errors: type[Exception]) -> Callable[[Hook], Hook]:
    """Decorate a syscall hook (on_enter, on_exit) whose failure on the host side
    (OSError: the tracee died, its memory is unreadable; `errors`: e.g. a database
    error) must leave the syscall as it is: reported by report_error, never raised."""
    caught = (OSError, *errors)

    def wrap(hook: Hook) -> Hook:
        @functools.wraps(hook)
        def run(self: Any, tracee: Tracee, sc: Syscall) -> None:
            try:
                hook(self, tracee, sc)
            except caught as exc:
                report_error(tracee, sc, exc)

        return run

    return wrap


def rewrite_guest_bytes(tracee: Tracee, addr: int, size: int, fix: Callable[[bytes], bytes]) -> None:
    """Replace the `size` bytes the kernel wrote at `addr` (a syscall's result) by
    fix(them) when that differs; memory the tracer cannot reach is left alone (the
    guest meets its own EFAULT)."""
    try:
        buf = tracee.read(addr, size)
    except OSError:
        return
    new = fix(buf)
    if new != buf:
        try:
            tracee.write(addr, new)
        except OSError:
            pass


def guest_to_host(tracee: Tracee, guest: str) -> str | None:
    """Host path of a guest path as this tracee sees it (None if it does not resolve)."""
    try:
        return tracee.view.to_host(guest)
    except (OSError, ValueError):  # GuestPathError: nothing to look at
        return None


def fd_path(pid: int, fd: int) -> str:
    """A path the tracer can use to reach the guest's open file (follows to the inode)."""
    if fd == AT_FDCWD:
        return f"/proc/{pid}/cwd"
    return f"/proc/{pid}/fd/{fd}"


def bad_fd(pid: int, fd: int) -> bool:
    """FD is not an open file of PID: the kernel's EBADF (AT_FDCWD always counts as open)."""
    if fd == AT_FDCWD:
        return False
    return fd < 0 or not os.path.lexists(f"/proc/{pid}/fd/{fd}")


def dirfd_error(sc: Syscall, path_arg: int, dirfd_arg: int | None, flags: int = 0) -> int:
    """-EBADF when the call would use a closed or invalid dirfd (relative path, or an empty
    one with AT_EMPTY_PATH), as the kernel answers; else 0."""
    if dirfd_arg is None or sc.host_paths.get(path_arg):
        return 0
    guest = sc.guest_paths.get(path_arg)
    if guest is None:
        try:
            guest = sc.tracee.read_string(sc.args[path_arg]) if sc.args[path_arg] else ""
        except OSError:
            return 0
    if guest.startswith("/") or (guest == "" and not flags & AT_EMPTY_PATH):
        return 0
    return -errno.EBADF if bad_fd(sc.tracee.pid, sc.arg_int(dirfd_arg)) else 0


def target_path(sc: Syscall, path_arg: int, dirfd_arg: int | None, flags: int = 0) -> str | None:
    """Host path of the file a path syscall acts on (None: let the kernel fail it).

    The core has already translated (and, for following syscalls, resolved)
    args[path_arg]; an empty path with AT_EMPTY_PATH means the dirfd itself.
    """
    host = sc.host_paths.get(path_arg)
    if host:
        return host
    guest = sc.guest_paths.get(path_arg)
    if guest is None:
        try:
            guest = sc.tracee.read_string(sc.args[path_arg]) if sc.args[path_arg] else ""
        except OSError:
            guest = ""
    if guest == "":
        if dirfd_arg is not None and flags & AT_EMPTY_PATH:
            return fd_path(sc.tracee.pid, sc.arg_int(dirfd_arg))
        return None
    if guest.startswith("/"):
        return guest
    if dirfd_arg is not None:
        return os.path.join(fd_path(sc.tracee.pid, sc.arg_int(dirfd_arg)), guest)
    return os.path.join(f"/proc/{sc.tracee.pid}/cwd", guest)


def umask_of(pid: int) -> int:
    """The process' umask (Linux >= 4.7 shows it in /proc/PID/status)."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    return 0o022


def _read_words(tracee: Tracee, addr: int, count: int) -> list[int]:
    word = tracee.abi.arch.word
    data = tracee.read(addr, count * word)
    return list(struct.unpack(f"<{count}{'I' if word == 4 else 'Q'}", data))


def auxv_address(tracee: Tracee) -> int | None:
    """Address of the auxiliary vector on a freshly exec'd process' stack.

    At the exec stop, sp points at argc; argv[argc+1] pointers, then envp up to
    its NULL, then the (type, value) pairs; all words of the new program's ABI
    (4 bytes for an i386 program).
    """
    word = tracee.abi.arch.word
    sp = tracee.get_reg(tracee.abi.arch.sp_slot)
    argc = tracee.read_word(sp)
    if argc > 1 << 20:
        return None
    p = sp + word * (argc + 2)
    for _ in range(1 << 16):
        chunk = _read_words(tracee, p, 32 - ((p // word) & 31) or 32)  # up to a 32-word boundary
        for value in chunk:
            p += word
            if value == 0:
                return p
    return None


def patch_auxv(tracee: Tracee, values: dict[int, int]) -> int:
    """Rewrite the values of the given auxv types in place; returns how many changed."""
    addr = auxv_address(tracee)
    if addr is None:
        return 0
    word = tracee.abi.arch.word
    changed = 0
    for _ in range(128):
        a_type, a_val = _read_words(tracee, addr, 2)
        if a_type == AT_NULL:
            break
        if a_type in values and values[a_type] != a_val:
            tracee.write_word(addr + word, values[a_type])
            changed += 1
        addr += 2 * word
    return changed

