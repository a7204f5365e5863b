"""Directory listings (getdents64) that show bound names the rootfs lacks.

A binding onto a name an existing rootfs directory does not have resolves (the
translator sees to that), but the kernel's listing of that directory does not
name it. Opens of such directories get an exit stop to learn the fd; at the end
of the listing (getdents64 returns 0) the missing bound names are returned once,
as dirents with d_type/d_ino, as many as the guest's buffer holds (EINVAL if
none fits). getdents64 is trapped only when some binding needs this.
"""

from __future__ import annotations

import errno
import os
import stat
import struct

from ocirun.engine.path.errors import GuestPathError

TYPE_CHECKING = False  # typing's, without importing typing (start-up time)
if TYPE_CHECKING:
    from ocirun.engine.path.translator import PathTranslator
    from ocirun.engine.plan import Binding
    from ocirun.engine.syscall import Syscall
    from ocirun.engine.syscalls import SyscallSpec
    from ocirun.engine.tracee import Tracee

ENC = "surrogateescape"
_DIRENT64_HEAD = 19  # d_ino u64, d_off s64, d_reclen u16, d_type u8, then the name


def dirs_missing_bindings(tr: PathTranslator, bindings: list[Binding]) -> dict[str, str]:
    """host dir -> guest dir of the existing rootfs directories in which a binding
    (or the glue directory leading to one) names an entry the directory lacks."""
    out: dict[str, str] = {}
    for b in bindings:
        try:
            guest = tr.canonical(b.guest, "/", b.deref_guest)
        except (GuestPathError, OSError):
            continue
        while guest != "/":
            guest = guest.rsplit("/", 1)[0] or "/"
            try:
                host = tr.to_host(guest, "/", True)
            except (GuestPathError, OSError):
                continue
            if any(not os.path.lexists(os.path.join(host, n)) for n in tr.bound_children(guest)):
                out[host.rstrip("/") or "/"] = guest
    return out


class DirListing:
    """The open listed directories, per (tgid, fd), and the names still to return."""

    def __init__(self, translator: PathTranslator, bindings: list[Binding]):
        self.translator = translator
        # host dir -> guest dir; empty: getdents64 needs no trap for this
        self.listed_dirs = dirs_missing_bindings(translator, bindings)
        self.open_dirs: dict[tuple[int, int], tuple[str, str, list[str] | None]] = {}
        self.fast = None  # the compiled fast path lets getdents64 through but on these fds

    def _changed(self) -> None:
        if self.fast is not None:
            self.fast.set_listing({fd for _, fd in self.open_dirs})

    def note_open(self, sc: Syscall, spec: SyscallSpec) -> None:
        """An open of a directory that lacks a bound name: learn its fd at the exit."""
        host = sc.host_paths.get(spec.paths[0].arg)
        if host is None:
            return
        host = host.rstrip("/") or "/"
        if host.endswith("/."):
            host = host[:-2] or "/"
        guest = self.listed_dirs.get(host)
        if guest is not None:
            sc.notes["listed_dir"] = (host, guest)
            sc.want_exit()

    def opened(self, t: Tracee, sc: Syscall, fd: int) -> None:
        """Exit of an open noted by note_open."""
        self.open_dirs[(t.tgid, fd)] = (*sc.notes["listed_dir"], None)
        self._changed()

    def enter_getdents(self, t: Tracee, sc: Syscall) -> None:
        if (t.tgid, sc.arg_int(0)) in self.open_dirs:
            sc.want_exit()

    def fix_getdents(self, t: Tracee, sc: Syscall) -> None:
        """End of a listed directory: the bound names it lacks, as many as fit, once."""
        key = (t.tgid, sc.arg_int(0))
        state = self.open_dirs.get(key)
        if state is None:  # no-seccomp mode: every getdents64 has an exit stop
            return
        host, guest, pending = state
        if pending is None:
            if (t.fd_host_path(key[1]) or "").rstrip("/") != host.rstrip("/"):
                del self.open_dirs[key]  # the fd was closed and reused: not ours anymore
                self._changed()
                return
            pending = [n for n in t.view.translator.bound_children(guest)
                       if not os.path.lexists(os.path.join(host, n))]
        size = sc.args[2] & 0xFFFFFFFF
        out = b""
        while pending:
            rec = self._dirent64(guest, pending[0], 0x7FFFFFF0 + len(out))
            if len(out) + len(rec) > size:
                break
            out += rec
            pending = pending[1:]
        self.open_dirs[key] = (host, guest, pending)
        if out:
            t.write(sc.args[1], out)
            sc.set_result(len(out))
        elif pending:
            sc.set_result(-errno.EINVAL)  # the kernel's answer to a buffer too small for one entry

    def _dirent64(self, guest_dir: str, name: str, off: int) -> bytes:
        raw = name.encode("utf-8", ENC)
        reclen = (_DIRENT64_HEAD + len(raw) + 1 + 7) & ~7
        try:
            st = os.lstat(self.translator.to_host(guest_dir.rstrip("/") + "/" + name, "/", False))
            ino, dtype = st.st_ino, stat.S_IFMT(st.st_mode) >> 12
        except (GuestPathError, OSError):
            ino, dtype = 1, 0  # DT_UNKNOWN
        return struct.pack("<QqHB", ino, off, reclen, dtype) + raw + b"\0" * (reclen - _DIRENT64_HEAD - len(raw))

    def on_fork(self, parent_tgid: int, child_pid: int) -> None:
        """A new process inherits its parent's open directories."""
        for (tgid, fd), state in list(self.open_dirs.items()):
            if tgid == parent_tgid:
                self.open_dirs[(child_pid, fd)] = state
        self._changed()

    def on_exit(self, tgid: int) -> None:
        for key in [k for k in self.open_dirs if k[0] == tgid]:
            del self.open_dirs[key]
        self._changed()
