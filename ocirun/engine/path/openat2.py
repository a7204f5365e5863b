"""openat2(2)'s open_how.resolve flags, applied in the GUEST namespace.

RESOLVE_BENEATH: EXDEV for an absolute path, an absolute symlink or '..' above
the starting directory. RESOLVE_IN_ROOT: that directory acts as the root ('/'
and absolute symlinks start there, '..' stops there). RESOLVE_NO_SYMLINKS /
NO_MAGICLINKS: ELOOP on following one. RESOLVE_NO_XDEV: EXDEV on entering or
leaving a binding (host mount points are not detected). The caller passes the
returned absolute host path to openat2 with these flags cleared.
"""

from __future__ import annotations

import errno

from ocirun.engine.path.errors import GuestPathError, check_length
from ocirun.engine.path.proc import is_proc_magic_link

TYPE_CHECKING = False  # typing's, without importing typing (start-up time)
if TYPE_CHECKING:
    from ocirun.engine.path.translator import PathTranslator

# linux/openat2.h
RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10
RESOLVE_CACHED = 0x20


def check_link_flags(rflags: int, h: str, target: str | None, path: str) -> None:
    """openat2 restrictions on following a symlink."""
    if rflags & RESOLVE_NO_SYMLINKS:
        raise GuestPathError(errno.ELOOP, path)
    if rflags & RESOLVE_NO_MAGICLINKS and h.startswith("/proc/") and is_proc_magic_link(h):
        raise GuestPathError(errno.ELOOP, path)
    if rflags & RESOLVE_BENEATH and target and target[0] == "/":
        raise GuestPathError(errno.EXDEV, path)


def to_host(tr: PathTranslator, guest_path: str, cwd: str, follow_last: bool, resolve: int,
            pid: int | None, tid: int | None) -> str:
    """PathTranslator.to_host_openat2 (cwd: the dirfd's canonical guest path)."""
    if not resolve & ~RESOLVE_CACHED:
        return tr.to_host(guest_path, cwd, follow_last, pid, tid)
    if not guest_path:
        raise GuestPathError(errno.ENOENT, guest_path)
    check_length(guest_path)
    if guest_path[0] == "/" and not resolve & RESOLVE_IN_ROOT:
        if resolve & RESOLVE_BENEATH:
            raise GuestPathError(errno.EXDEV, guest_path)
        return tr._walk(guest_path, follow_last, False, pid, tid, resolve)[1]
    # relative (or IN_ROOT): the walk starts in cwd, as the kernel's starts at dirfd
    root = ([""], [tr._root_host])
    tr._walk(cwd if cwd[:1] == "/" else "/" + cwd, True, False, pid, tid, 0, root)
    base = tr._last_stacks
    floor = 1
    if resolve & (RESOLVE_BENEATH | RESOLVE_IN_ROOT):
        resolve |= RESOLVE_NO_MAGICLINKS  # implied, as in the kernel
        floor = len(base[0])
    rel = "/" + guest_path.lstrip("/")
    return tr._walk(rel, follow_last, False, pid, tid, resolve, base, floor)[1]
