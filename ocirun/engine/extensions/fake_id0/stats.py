"""Stat results as the guest must see them: answered in the tracer (no exit stop)
or fixed at the exit stop (OCIRUN_FAKEROOT_STAT=exit)."""

from __future__ import annotations

import ctypes
import errno
import os

from ocirun.engine.extensions.fake_id0.tables import (
    _STAT,
    _STAT_AT_EXIT,
    _libc,
)
from ocirun.engine.extensions.shared import statbuf
from ocirun.engine.extensions.shared.common import bad_fd, fd_path, rewrite_guest_bytes
from ocirun.util.linux import AT_EMPTY_PATH, AT_FDCWD, AT_SYMLINK_NOFOLLOW

TYPE_CHECKING = False  # typing's, without importing typing (start-up time)
if TYPE_CHECKING:
    from ocirun.engine.syscall import Syscall
    from ocirun.engine.tracee import Tracee


class StatCalls:
    """Part of FakeId0 (ocirun/engine/extensions/fake_id0/__init__.py)."""

    # ---- stat results -----------------------------------------------------------------

    def _stat_enter(self, tracee: Tracee, sc: Syscall) -> None:
        """Answer the stat in the tracer when we can (no exit stop: the guest's stat
        costs what it costs without -0); otherwise fix the result at the exit stop."""
        if _STAT[sc.name][1] == "stat" and sc.arch.word != 8:
            return  # i386's old struct stat (16-bit ids): the kernel's answer, as is
        if _STAT_AT_EXIT or not self._emulate_stat(tracee, sc):
            sc.want_exit()

    def _stat_source(self, tracee: Tracee, sc: Syscall) -> tuple[str, int, int] | None:
        """(host path, flags, statx mask) to stat for the guest, or None: let the kernel."""
        name = sc.name
        pid = tracee.pid
        mask = 0
        if name == "fstat" or name == "fstat64":  # (AT_FDCWD is no fd here: the kernel's EBADF)
            fd = sc.arg_int(0)
            return None if fd < 0 or bad_fd(pid, fd) else (fd_path(pid, fd), 0, 0)
        if name in ("stat", "lstat", "stat64", "lstat64"):
            path_arg, dirfd_arg, flags = 0, None, AT_SYMLINK_NOFOLLOW if name[0] == "l" else 0
        elif name == "newfstatat" or name == "fstatat64":
            path_arg, dirfd_arg, flags = 1, 0, sc.arg_int(3)
        else:  # statx
            path_arg, dirfd_arg, flags, mask = 1, 0, sc.arg_int(2), sc.args[3] & 0xFFFFFFFF
        host = sc.host_paths.get(path_arg)
        if not host:
            if dirfd_arg is None or not flags & AT_EMPTY_PATH or sc.guest_paths.get(path_arg):
                return None
            try:
                if sc.args[path_arg] and tracee.read(sc.args[path_arg], 1) != b"\0":
                    return None
            except OSError:
                return None
            if bad_fd(pid, sc.arg_int(dirfd_arg)):
                return None  # the kernel's EBADF
            return fd_path(pid, sc.arg_int(dirfd_arg)), flags & ~AT_EMPTY_PATH, mask
        if not host.startswith("/") or host.startswith(("/proc/self", "/proc/thread-self")):
            return None
        return host, flags, mask

    def _emulate_stat(self, tracee: Tracee, sc: Syscall) -> bool:
        source = self._stat_source(tracee, sc)
        if source is None:
            return False
        host, flags, mask = source
        kind = _STAT[sc.name][1]
        buf = self._statbuf
        path = os.fsencode(host)
        if kind == "statx":
            rc = _libc.statx(AT_FDCWD, path, flags, mask, buf)
        else:  # the host's struct stat (for stat64: converted below)
            rc = _libc.syscall(self.stat_abi.fstatat_nr, AT_FDCWD, path, buf, flags)
        if rc != 0:
            sc.skip(-ctypes.get_errno())
            return True
        if kind == "statx":
            data = self._patched(buf.raw[:statbuf.STATX_SIZE], kind)
        else:
            data = self._patched(buf.raw[:self.stat_abi.layout.size], "stat")
            if kind == "stat64":
                data = statbuf.stat64_from_x86_64(data)
        try:
            tracee.write(sc.args[_STAT[sc.name][0]], data)
        except OSError:
            sc.skip(-errno.EFAULT)
            return True
        sc.skip(0)
        return True

    def _stat_exit(self, tracee: Tracee, sc: Syscall) -> None:
        if sc.result != 0:
            return
        index, kind = _STAT[sc.name]
        size = statbuf.result_size(kind, self.stat_abi.layout)
        rewrite_guest_bytes(tracee, sc.args[index], size, lambda buf: self._patched(buf, kind))

    def _patched(self, buf: bytes, kind: str) -> bytes:
        """The guest's view of a stat result: fake ids, then what the database says.
        (The hot path of -0: plain struct unpacking, a dict lookup, no objects.)"""
        btime = None
        if kind == "stat":
            dev, ino, uid, gid = self.stat_abi.head.unpack_from(buf)
        else:
            view = statbuf.parse(kind, buf)
            dev, ino, uid, gid, btime = view.dev, view.ino, view.uid, view.gid, view.btime_ns
        changes: dict[str, int] = {}
        if uid == self.real_uid and self.fuid != uid:
            changes["uid"] = self.fuid
        if gid == self.real_gid and self.fgid != gid:
            changes["gid"] = self.fgid
        rec = self.db.get(dev, ino)
        if rec is not None and not (rec.btime and btime and rec.btime != btime):
            if rec.uid is not None:
                changes["uid"] = rec.uid
            if rec.gid is not None:
                changes["gid"] = rec.gid
            if rec.mode is not None:
                changes["mode"] = rec.mode
            if rec.rdev is not None:
                changes["rdev"] = rec.rdev
                changes["size"] = 0
        if self.engine.changes_stats:  # other extensions' changes (link2symlink's link counts)
            changes.update(self.engine.stat_changes(statbuf.parse(kind, buf, self.stat_abi.layout)))
        return statbuf.patch(kind, buf, self.stat_abi.layout, **changes) if changes else buf
