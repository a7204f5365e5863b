"""Ownership and modes (chown, chmod, mknod of devices) applied as far as the
kernel lets the real user and recorded in the fake-root database; access(2) and
the permission checks root would pass."""

from __future__ import annotations

import errno
import os
import stat

from ocirun.engine.extensions.fake_id0.creds import NOCHANGE
from ocirun.engine.extensions.fake_id0.tables import (
    _ACCESS,
    _CHMOD,
    _CHOWN,
    _MKNOD,
    _NAMESPACE,
    _OPEN,
    AT_EACCESS,
    O_ACCMODE,
    O_CREAT,
    O_PATH,
    O_TRUNC,
    ST_RDONLY,
)
from ocirun.engine.extensions.shared.common import (
    bad_fd,
    dirfd_error,
    fd_path,
    target_path,
    umask_of,
)
from ocirun.util.linux import AT_SYMLINK_NOFOLLOW

TYPE_CHECKING = False  # typing's, without importing typing (start-up time)
if TYPE_CHECKING:
    from ocirun.engine.syscall import Syscall
    from ocirun.engine.tracee import Tracee


def open_flags(tracee: Tracee, sc: Syscall) -> int | None:
    """The open flags of an open-family call (creat's are fixed, openat2's are in its
    struct open_how); None when the guest's memory cannot be read."""
    _, flags_arg, fixed = _OPEN[sc.name]
    if fixed != -1:
        return fixed or sc.args[flags_arg]
    try:
        return tracee.read_u64(sc.args[2])
    except OSError:
        return None


class FileCalls:
    """Part of FakeId0 (ocirun/engine/extensions/fake_id0/__init__.py)."""

    # ---- ownership and modes -----------------------------------------------------------

    def _target(self, sc: Syscall, path_arg: int | None, fd_arg: int | None, flags: int,
                follow: bool) -> tuple[str | None, os.stat_result | int]:
        """(path to record, stat) of the file a chown/chmod acts on, or (None, -errno)."""
        if path_arg is None:
            if bad_fd(sc.tracee.pid, sc.arg_int(fd_arg)):
                return None, -errno.EBADF
            where = fd_path(sc.tracee.pid, sc.arg_int(fd_arg))
            follow = True
        else:
            err = dirfd_error(sc, path_arg, fd_arg, flags)
            if err:
                return None, err
            where = target_path(sc, path_arg, fd_arg, flags)
            if where is None:
                return None, -errno.ENOENT
        try:
            st = os.stat(where, follow_symlinks=follow)
        except OSError as e:
            return None, -(e.errno or errno.EIO)
        real = where
        if where.startswith("/proc/"):
            try:
                real = os.path.realpath(where) if follow else where
            except OSError:
                real = None
        if real is not None and (real.endswith(" (deleted)") or not real.startswith("/")):
            real = None
        return real, st

    def _chown(self, tracee: Tracee, sc: Syscall) -> None:
        path_arg, fd_arg, uid_arg, gid_arg, flags_arg, follows = _CHOWN[sc.name]
        flags = sc.arg_int(flags_arg) if flags_arg is not None else 0
        follow = follows and not flags & AT_SYMLINK_NOFOLLOW
        real, st = self._target(sc, path_arg, fd_arg, flags, follow)
        if isinstance(st, int):
            sc.skip(st)
            return
        uid, gid = sc.args[uid_arg] & 0xFFFFFFFF, sc.args[gid_arg] & 0xFFFFFFFF
        cur_uid, cur_gid = self.guest_owner(st)
        c = self.creds(tracee)
        if not c.may_chown(cur_uid, cur_gid, uid, gid):
            sc.skip(-errno.EPERM)
            return
        new_uid = cur_uid if uid == NOCHANGE else uid
        new_gid = cur_gid if gid == NOCHANGE else gid
        self.db.set_owner(st, real, self._rec_id(new_uid, st.st_uid, True),
                          self._rec_id(new_gid, st.st_gid, False))
        # chown(2): set-user-ID (and group-executable set-group-ID) bits of a
        # non-directory are cleared, whoever calls it.
        mode = self.guest_mode(st)
        if not stat.S_ISDIR(mode) and not stat.S_ISLNK(mode):
            kill = stat.S_ISUID | (stat.S_ISGID if mode & stat.S_IXGRP else 0)
            if mode & kill:
                self._apply_mode(real or fd_path(tracee.pid, sc.arg_int(fd_arg)), st,
                                 mode & ~kill, real)
        sc.skip(0)

    def _chmod(self, tracee: Tracee, sc: Syscall) -> None:
        path_arg, fd_arg, mode_arg, flags_arg = _CHMOD[sc.name]
        flags = sc.arg_int(flags_arg) if flags_arg is not None else 0
        follow = not flags & AT_SYMLINK_NOFOLLOW
        real, st = self._target(sc, path_arg, fd_arg, flags, follow)
        if isinstance(st, int):
            sc.skip(st)
            return
        if stat.S_ISLNK(st.st_mode):
            sc.skip(-errno.EOPNOTSUPP)
            return
        c = self.creds(tracee)
        uid, gid = self.guest_owner(st)
        if not c.may_chmod(uid):
            sc.skip(-errno.EPERM)
            return
        perm = sc.args[mode_arg] & 0o7777
        if c.fsuid != 0 and not c.in_group(gid):
            perm &= ~stat.S_ISGID  # chmod(2): only group members keep set-group-ID
        guest = stat.S_IFMT(self.guest_mode(st)) | perm
        where = real if path_arg is not None and real else (
            fd_path(tracee.pid, sc.arg_int(fd_arg)) if path_arg is None else real)
        sc.skip(self._apply_mode(where, st, guest, real))

    def _apply_mode(self, where: str | None, st: os.stat_result, guest_mode: int,
                    real: str | None) -> int:
        """Give the file `guest_mode` as far as the kernel lets us, keeping the owner's
        access, and record what the guest must see. Returns 0 or -errno."""
        disk = st.st_mode
        shared = self._shares_inodes and stat.S_ISREG(st.st_mode) and st.st_nlink > 1
        if where is not None and st.st_uid == self.real_uid and not shared:
            keep = 0o700 if stat.S_ISDIR(st.st_mode) else 0o600
            try:
                os.chmod(where, (guest_mode & 0o7777) | keep)
                disk = os.stat(where).st_mode
            except PermissionError:
                pass
            except OSError as e:
                return -(e.errno or errno.EIO)
        self.db.set_mode(st, real, None if disk == guest_mode else guest_mode)
        return 0

    def _mknod(self, tracee: Tracee, sc: Syscall) -> None:
        path_arg, dirfd_arg, mode_arg, dev_arg = _MKNOD[sc.name]
        mode = sc.args[mode_arg] & 0xFFFFFFFF
        kind = stat.S_IFMT(mode)
        if kind not in (stat.S_IFCHR, stat.S_IFBLK):
            return  # fifos, sockets and regular files need no privilege
        c = self.creds(tracee)
        if not c.privileged:
            sc.skip(-errno.EPERM)
            return
        host = sc.host_paths.get(path_arg)
        if not host:
            return
        perm = mode & 0o7777 & ~umask_of(tracee.pid)
        try:
            self._grant_parent(host)
            fd = os.open(host, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW, perm | 0o600)
            os.close(fd)
            st = os.lstat(host)
        except OSError as e:
            sc.skip(-(e.errno or errno.EIO))
            return
        self.engine.invalidate(host)
        self.db.set_node(st, host, kind | perm, sc.args[dev_arg])
        self.db.set_owner(st, host, self._rec_id(c.fsuid, st.st_uid, True),
                          self._rec_id(c.fsgid, st.st_gid, False))
        sc.skip(0)

    # ---- access(2) as root -----------------------------------------------------------

    def _access(self, tracee: Tracee, sc: Syscall) -> None:
        path_arg, dirfd_arg, mode_arg, flags_arg = _ACCESS[sc.name]
        flags = sc.arg_int(flags_arg) if flags_arg is not None else 0
        c = self.creds(tracee)
        if (c.euid if flags & AT_EACCESS else c.ruid) != 0 or self.real_uid == 0:
            return
        mode = sc.args[mode_arg] & 7
        host = target_path(sc, path_arg, dirfd_arg, flags)
        if not host or mode == 0 or os.access(host, mode):
            return
        try:
            st = os.stat(host, follow_symlinks=not flags & AT_SYMLINK_NOFOLLOW)
        except OSError:
            return  # ENOENT, ENOTDIR, ...: the kernel says it
        if mode & os.X_OK and not stat.S_ISDIR(st.st_mode) and not self.guest_mode(st) & 0o111:
            return  # root too needs one execute bit
        if mode & os.W_OK:
            try:
                if os.statvfs(host).f_flag & ST_RDONLY:
                    return
            except OSError:
                return
        sc.skip(0)

    # ---- permission checks root would pass ------------------------------------------

    def _root_permissions(self, tracee: Tracee, sc: Syscall) -> None:
        """Before the kernel checks the real user's rights, give the real user what
        root would have (persistently, on files it owns; the guest keeps seeing
        the old mode through the database)."""
        name = sc.name
        if name in _OPEN:
            host = sc.host_paths.get(_OPEN[name][0])
            flags = open_flags(tracee, sc) if host else None
            if flags is None or flags & O_PATH:
                return
            acc = flags & O_ACCMODE
            need = (os.R_OK, os.W_OK, os.R_OK | os.W_OK)[acc] if acc < 3 else os.R_OK
            if flags & O_TRUNC:
                need |= os.W_OK
            if os.access(host, need):
                return
            if os.path.lexists(host):
                self._grant(host, need)
            elif flags & O_CREAT:
                self._grant_parent(host)
            else:
                self._grant_search(host)
            return
        if name in _NAMESPACE:
            for path_arg in _NAMESPACE[name]:
                host = sc.host_paths.get(path_arg)
                if host:
                    parent = os.path.dirname(host.rstrip("/")) or "/"
                    if not os.access(parent, os.W_OK | os.X_OK):
                        self._grant_parent(host)
            return
        if name in ("truncate", "chdir"):
            host = sc.host_paths.get(0)
            need = os.W_OK if name == "truncate" else os.X_OK
            if host and not os.access(host, need):
                self._grant(host, need)

    def lend_search(self, tracee: Tracee, guest_path: str) -> bool:
        """-0 as PRoot: the directories on the way to `guest_path` that the real user owns
        but may not search become searchable (the guest keeps seeing their mode)."""
        if self.real_uid == 0 or self.creds(tracee).fsuid != 0:
            return False
        parent = guest_path.rstrip("/").rpartition("/")[0] or "/"
        try:
            host = tracee.view.translator.to_host(parent, "/", True, tracee.tgid, tracee.pid)
        except OSError:
            return False
        return self._grant_search(host.rstrip("/") + "/x")

    def _grant_search(self, host: str) -> bool:
        """Every directory on the way must be searchable (True: one was not)."""
        parts = host.rstrip("/").split("/")
        changed = False
        for i in range(2, len(parts)):
            changed = self._widen("/".join(parts[:i]), 0o100) or changed
        return changed

    def _grant_parent(self, host: str) -> None:
        parent = os.path.dirname(host.rstrip("/")) or "/"
        self._grant_search(parent + "/x")
        self._widen(parent, 0o300)

    def _grant(self, host: str, need: int) -> None:
        self._grant_search(host)
        bits = (0o400 if need & os.R_OK else 0) | (0o200 if need & os.W_OK else 0)
        if need & os.X_OK:
            bits |= 0o100
        self._widen(host, bits)

    def _widen(self, path: str, bits: int) -> bool:
        """Add `bits` to the mode of a file the real user owns; True if it changed."""
        try:
            st = os.lstat(path)
        except OSError:
            return False
        if st.st_uid != self.real_uid or stat.S_ISLNK(st.st_mode):
            return False
        if self._shares_inodes and stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
            return False  # a container's file still shared with its image: never change it
        if bits & 0o100 and not stat.S_ISDIR(st.st_mode):
            bits &= ~0o100
        if st.st_mode & bits == bits:
            return False
        rec = self.db.get(st.st_dev, st.st_ino)
        try:
            if rec is None or rec.mode is None:
                self.db.set_mode(st, path, st.st_mode)
            os.chmod(path, (st.st_mode & 0o7777) | bits, follow_symlinks=False)
        except (OSError, NotImplementedError):
            return False
        return True
