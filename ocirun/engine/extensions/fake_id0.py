"""`-0`/`-i uid:gid`: the current user appears as another user, root by default.

What the guest sees:
- get*id / getgroups / the auxv AT_*UID/GID answer from an emulated set of
  credentials per process (ocirun.engine.extensions.creds): the set*id family
  and setgroups follow the kernel's permission rules and never reach the kernel.
- Files owned by the real user appear owned by uid:gid in every stat form.
- chown/chmod/mknod of devices succeed (with POSIX permission rules applied to
  the emulated ids) and are remembered in the rootfs' fake-root database, so
  later stats, this run and the next, show them (fakeroot_db).
- Permission checks root would pass succeed: a directory or file the real user
  owns but cannot write/read/search gets the missing *owner* bits for real,
  and the mode the guest should see is recorded in the database. Unlike
  PRoot's temporary chmod there is nothing to restore (no window in which
  another process sees the widened mode and no state lost if the tracer dies).
- capset, sethostname/setdomainname, setxattr of security./trusted. names,
  chroot to the guest root report success.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import sqlite3
import stat
import struct
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ocirun.engine.extension import Extension
from ocirun.engine.extensions import statbuf
from ocirun.engine.extensions.common import (
    bad_fd,
    dirfd_error,
    fd_path,
    guest_to_host,
    invalidate,
    patch_auxv,
    target_path,
    umask_of,
)
from ocirun.engine.extensions.common import report_error as _report
from ocirun.engine.extensions.creds import NGROUPS_MAX, NOCHANGE, Creds
from ocirun.engine.extensions.fakeroot_db import FakeRootDB, open_db
from ocirun.util.linux import (
    AT_EACCESS,
    AT_EGID,
    AT_EMPTY_PATH,
    AT_EUID,
    AT_FDCWD,
    AT_GID,
    AT_SYMLINK_NOFOLLOW,
    AT_UID,
    O_ACCMODE,
    O_CREAT,
    O_PATH,
    O_TRUNC,
)

if TYPE_CHECKING:
    from ocirun.engine.syscall import Syscall
    from ocirun.engine.tracee import Tracee

RENAME_EXCHANGE = 2
ST_RDONLY = 1

_libc = ctypes.CDLL(None, use_errno=True)
SYS_newfstatat = 262
_STAT_HEAD = struct.Struct("<QQQIII")  # st_dev, st_ino, st_nlink, st_mode, st_uid, st_gid
# OCIRUN_FAKEROOT_STAT=exit: fix stat results at the exit stop instead of answering in the tracer
_STAT_AT_EXIT = os.environ.get("OCIRUN_FAKEROOT_STAT", "") == "exit"

_ID_GETTERS = {
    "getuid": lambda c: c.ruid,
    "geteuid": lambda c: c.euid,
    "getgid": lambda c: c.rgid,
    "getegid": lambda c: c.egid,
}
_ID_SETTERS: dict[str, Callable[..., int]] = {
    "setuid": Creds.setuid,
    "setgid": Creds.setgid,
    "setreuid": Creds.setreuid,
    "setregid": Creds.setregid,
    "setresuid": Creds.setresuid,
    "setresgid": Creds.setresgid,
    "setfsuid": Creds.setfsuid,
    "setfsgid": Creds.setfsgid,
}
_ID_NARGS = {"setuid": 1, "setgid": 1, "setfsuid": 1, "setfsgid": 1, "setreuid": 2,
             "setregid": 2, "setresuid": 3, "setresgid": 3}

# name: (path arg or None for fd-based, dirfd/fd arg, uid arg, gid arg, flags arg, follows)
_CHOWN = {
    "chown": (0, None, 1, 2, None, True),
    "lchown": (0, None, 1, 2, None, False),
    "fchown": (None, 0, 1, 2, None, True),
    "fchownat": (1, 0, 2, 3, 4, True),
}
# name: (path arg, dirfd arg, mode arg, flags arg)
_CHMOD = {
    "chmod": (0, None, 1, None),
    "fchmod": (None, 0, 1, None),
    "fchmodat": (1, 0, 2, None),
    "fchmodat2": (1, 0, 2, 3),
}
_MKNOD = {"mknod": (0, None, 1, 2), "mknodat": (1, 0, 2, 3)}
# name: index of the stat buffer argument, struct kind
_STAT = {"stat": (1, "stat"), "lstat": (1, "stat"), "fstat": (1, "stat"),
         "newfstatat": (2, "stat"), "statx": (4, "statx")}
_ACCESS = {"access": (0, None, 1, None), "faccessat": (1, 0, 2, None),
           "faccessat2": (1, 0, 2, 3)}
# name: (path arg, flags arg or None, fixed flags)
_OPEN = {"open": (0, 1, 0), "openat": (1, 2, 0), "creat": (0, None, 0o1101), "openat2": (1, None, -1)}
# name: path args whose parent directory must be writable
_NAMESPACE = {
    "mkdir": (0,), "mkdirat": (1,), "rmdir": (0,), "unlink": (0,), "unlinkat": (1,),
    "mknod": (0,), "mknodat": (1,), "symlink": (1,), "symlinkat": (2,),
    "link": (1,), "linkat": (3,), "rename": (0, 1), "renameat": (1, 3), "renameat2": (1, 3),
}
# name: path arg of a newly created inode (ownership recorded for non-default fsuid/fsgid)
_CREATES = {"mkdir": 0, "mkdirat": 1, "mknod": 0, "mknodat": 1, "symlink": 1, "symlinkat": 2,
            "open": 0, "openat": 1, "creat": 0, "openat2": 1}
_RENAMES = {"rename": (0, 1), "renameat": (1, 3), "renameat2": (1, 3)}
_UNLINKS = {"unlink": 0, "unlinkat": 1, "rmdir": 0}
_XATTR_SET = {"setxattr": 1, "lsetxattr": 1, "fsetxattr": 1}
_ALWAYS_OK = {"sethostname", "setdomainname"}
PR_GET_KEEPCAPS, PR_SET_KEEPCAPS = 7, 8
_CAP_V1, _CAP_V2, _CAP_V3 = 0x19980330, 0x20071026, 0x20080522


def _full_caps() -> tuple[int, int]:
    """The capability bits a real root has on this kernel (low word, high word)."""
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            last = int(f.read())
    except (OSError, ValueError):
        last = 40
    return 0xFFFFFFFF, (1 << (last - 31)) - 1 if last >= 32 else 0

SYSCALLS = frozenset(
    set(_ID_GETTERS) | set(_ID_SETTERS) | set(_CHOWN) | set(_CHMOD) | set(_MKNOD) | set(_STAT)
    | set(_ACCESS) | set(_OPEN) | set(_NAMESPACE) | set(_XATTR_SET) | _ALWAYS_OK
    | {"getresuid", "getresgid", "getgroups", "setgroups", "chroot", "truncate", "chdir",
       "capget", "capset", "prctl"}
)


class FakeId0(Extension):
    """`-0` (uid=gid=0) and `-i uid:gid`."""

    name = "fake_id0"
    syscalls = SYSCALLS

    def __init__(self, uid: int = 0, gid: int = 0, db_path: str | None = None,
                 ownership_file: str | None = None,
                 file_owner: tuple[int, int] | None = None):
        """uid:gid are the ids the guest's first process has; file_owner is who the real
        user's files appear to belong to (PRoot: the same; the runner: 0:0, the owner of
        an image's files, whatever the image's USER)."""
        self.uid, self.gid = uid, gid
        self.fuid, self.fgid = file_owner if file_owner is not None else (uid, gid)
        self.real_uid, self.real_gid = os.getuid(), os.getgid()
        self.db_path = db_path
        self.ownership_file = ownership_file
        self.db: FakeRootDB | None = None
        self._shares_inodes = False
        self._tree: Any = None  # the container tree of the runner's copy-up extension
        self.rootfs = "/"
        self.engine: Any = None
        # Other extensions' changes to stat results (link2symlink's link counts): a
        # stat answered here never reaches their exit hooks.
        self.stat_hooks: list[Callable[[statbuf.StatView], dict[str, int]]] = []
        self._statbuf = ctypes.create_string_buffer(statbuf.STATX_SIZE)
        self._enter: dict[str, Callable[[Tracee, Syscall], None]] = {}
        for names, handler in (
            (_ID_GETTERS, self._get_id), (_ID_SETTERS, self._set_id), (_CHOWN, self._chown),
            (_CHMOD, self._chmod), (_STAT, self._stat_enter), (_ACCESS, self._access),
            (_XATTR_SET, self._setxattr), (_ALWAYS_OK, self._ok),
            ({"getresuid": 0, "getresgid": 0}, self._getres), ({"getgroups": 0}, self._getgroups),
            ({"setgroups": 0}, self._setgroups), ({"chroot": 0}, self._chroot),
            ({"capget": 0}, self._capget), ({"capset": 0}, self._capset),
            ({"prctl": 0}, self._prctl),
        ):
            for n in names:
                self._enter[n] = handler

    # ---- lifecycle ------------------------------------------------------------------

    def attach(self, engine: Any) -> None:
        self.engine = engine
        # The runner's containers share files with their image (hard links, copied up
        # before a write by its copy-up extension, which runs first).
        copy_up = [e for e in getattr(engine, "extensions", []) if getattr(e, "name", "") == "copy-up"]
        self._shares_inodes = bool(copy_up)
        self._tree = getattr(copy_up[0], "tree", None) if copy_up else None
        self.rootfs = os.path.realpath(engine.plan.rootfs)
        self.db, warning = open_db(self.rootfs, self.db_path)
        if warning and getattr(engine, "verbose", 0) >= 0:
            print(f"ocirun: warning: {warning}", file=sys.stderr)
        try:
            self.db.revalidate()
        except (OSError, sqlite3.Error):
            pass
        self._seed()

    def detach(self, engine: Any) -> None:
        if self.db is not None:
            self.db.close()

    def _seed(self) -> None:
        """Ownership the image unpacker could not apply (layers' `ownership` file)."""
        candidates = [self.ownership_file] if self.ownership_file else [
            os.path.join(os.path.dirname(self.rootfs), "ownership")]
        for path in candidates:
            try:
                with open(path) as f:
                    doc = json.load(f)
            except (OSError, ValueError):
                continue
            if not isinstance(doc, dict) or not isinstance(doc.get("entries"), dict):
                continue
            entries = []
            for rel, e in doc["entries"].items():
                self._reach(rel)
                if e.get("skipped") and e.get("type") in ("c", "b"):
                    self._seed_node(rel, e)
                    continue
                if e.get("skipped") and e.get("type") == "p":
                    try:  # FIFOs need no privilege: make them for real
                        os.mkfifo(os.path.join(self.rootfs, rel.lstrip("/")),
                                  e.get("mode", 0o644) & 0o7777)
                    except OSError:
                        pass
                entries.append((rel, e.get("uid"), e.get("gid"), e.get("mode")))
            self.db.seed(entries, os.path.realpath(path))

    def _reach(self, rel: str) -> None:
        """Materialise a container's lazy directories above `rel`, so the seed finds it
        (its owner would otherwise be lost: seeding happens once)."""
        tree = self._tree
        if tree is None:
            return
        host = tree.root
        for part in rel.strip("/").split("/")[:-1]:
            host = os.path.join(host, part)
            if os.path.islink(host) or not tree.ensure(host):
                return

    def _seed_node(self, rel: str, e: dict) -> None:
        host = os.path.join(self.rootfs, rel.lstrip("/"))
        try:
            fd = os.open(host, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW, 0o600)
            os.close(fd)
        except OSError:
            return
        kind = stat.S_IFCHR if e["type"] == "c" else stat.S_IFBLK
        st = os.lstat(host)
        self.db.set_node(st, host, kind | (e.get("mode", 0o600) & 0o7777),
                         os.makedev(e.get("major") or 0, e.get("minor") or 0))
        self.db.set_owner(st, host, self._rec_id(e.get("uid"), st.st_uid, True),
                          self._rec_id(e.get("gid"), st.st_gid, False))

    def creds(self, tracee: Tracee) -> Creds:
        c = tracee.data.get("fake_id0.creds")
        if c is None:
            parent = tracee.parent.data.get("fake_id0.creds") if tracee.parent else None
            c = parent.copy() if parent else Creds.initial(self.uid, self.gid)
            tracee.data["fake_id0.creds"] = c
        return c

    def on_fork(self, parent: Tracee, child: Tracee) -> None:
        child.data["fake_id0.creds"] = self.creds(parent).copy()

    def on_exec(self, tracee: Tracee) -> None:
        tracee.data.pop("fake_id0.dumpable", None)
        c = self.creds(tracee)
        file_uid = file_gid = None
        host = self._exe_host(tracee)
        if host is not None:
            try:
                st = os.stat(host)
                mode = self.guest_mode(st)
                uid, gid = self.guest_owner(st)
                if mode & stat.S_ISUID:
                    file_uid = uid
                if mode & stat.S_ISGID and mode & stat.S_IXGRP:
                    file_gid = gid
            except OSError:
                pass
        c.on_exec(file_uid, file_gid)
        try:
            patch_auxv(tracee, {AT_UID: c.ruid, AT_EUID: c.euid, AT_GID: c.rgid, AT_EGID: c.egid})
        except OSError:
            pass

    def _exe_host(self, tracee: Tracee) -> str | None:
        return guest_to_host(tracee, tracee.exe) if tracee.exe else None

    # ---- the guest's view of a file ---------------------------------------------------

    def _rec_id(self, new: int | None, real: int, is_uid: bool) -> int | None:
        """What to store for an owner: None when the disk already shows `new`."""
        if new is None:
            return None
        mine = self.real_uid if is_uid else self.real_gid
        fake = self.fuid if is_uid else self.fgid
        shown = fake if real == mine else real
        return None if new == shown else new

    def guest_owner(self, st: os.stat_result) -> tuple[int, int]:
        rec = self.db.get(st.st_dev, st.st_ino)
        uid = self.fuid if st.st_uid == self.real_uid else st.st_uid
        gid = self.fgid if st.st_gid == self.real_gid else st.st_gid
        if rec is not None:
            uid = rec.uid if rec.uid is not None else uid
            gid = rec.gid if rec.gid is not None else gid
        return uid, gid

    def guest_mode(self, st: os.stat_result) -> int:
        rec = self.db.get(st.st_dev, st.st_ino)
        return rec.mode if rec is not None and rec.mode is not None else st.st_mode

    # ---- dispatch ---------------------------------------------------------------------

    def on_enter(self, tracee: Tracee, sc: Syscall) -> None:
        try:
            self._on_enter(tracee, sc)
        except (OSError, sqlite3.Error) as exc:  # e.g. the tracee died: leave the syscall
            _report(tracee, sc, exc)

    def _on_enter(self, tracee: Tracee, sc: Syscall) -> None:
        name = sc.name
        handler = self._enter.get(name)
        if handler is not None:
            handler(tracee, sc)
            if sc.skipped:
                return
        if name in _MKNOD:
            self._mknod(tracee, sc)
            if sc.skipped:
                return
        c = self.creds(tracee)
        if c.fsuid == 0 and self.real_uid != 0:
            self._root_permissions(tracee, sc)
        if name in _CREATES and (c.fsuid != self.fuid or c.fsgid != self.fgid):
            self._note_creation(tracee, sc, c)
        if self.db is not None and self.db.any():
            if name in _RENAMES:
                self._note_rename(tracee, sc)
            elif name in _UNLINKS:
                self._note_unlink(tracee, sc)

    def on_exit(self, tracee: Tracee, sc: Syscall) -> None:
        try:
            self._on_exit(tracee, sc)
        except (OSError, sqlite3.Error) as exc:
            _report(tracee, sc, exc)

    def _on_exit(self, tracee: Tracee, sc: Syscall) -> None:
        name = sc.name
        if name in _STAT:
            self._stat_exit(tracee, sc)
            return
        pending = tracee.data.pop("fake_id0.pending", None)
        if pending is None or pending[0] is not sc or sc.result < 0:
            return  # (a note left by a syscall another extension skipped is dropped here)
        pending = pending[1:]
        kind = pending[0]
        try:
            if kind == "create":
                _, host, uid, gid = pending
                st = os.lstat(host)
                self.db.set_owner(st, host, self._rec_id(uid, st.st_uid, True),
                                  self._rec_id(gid, st.st_gid, False))
            elif kind == "rename":
                _, old, new, replaced, is_exchange = pending
                if is_exchange:
                    tmp = new + ".ocirun-exchange"
                    self.db.renamed(new, tmp)
                    self.db.renamed(old, new)
                    self.db.renamed(tmp, old)
                else:
                    self.db.renamed(old, new)
                    if replaced is not None:
                        self.db.forget(*replaced)
            elif kind == "unlink":
                self.db.forget(*pending[1])
        except OSError:
            pass

    # ---- ids --------------------------------------------------------------------------

    def _get_id(self, tracee: Tracee, sc: Syscall) -> None:
        sc.skip(_ID_GETTERS[sc.name](self.creds(tracee)))

    def _set_id(self, tracee: Tracee, sc: Syscall) -> None:
        args = sc.args[: _ID_NARGS[sc.name]]
        sc.skip(_ID_SETTERS[sc.name](self.creds(tracee), *args))

    def _getres(self, tracee: Tracee, sc: Syscall) -> None:
        c = self.creds(tracee)
        ids = (c.ruid, c.euid, c.suid) if sc.name == "getresuid" else (c.rgid, c.egid, c.sgid)
        try:
            for i, value in enumerate(ids):
                tracee.write_u32(sc.args[i], value)
        except OSError:
            sc.skip(-errno.EFAULT)
            return
        sc.skip(0)

    def _getgroups(self, tracee: Tracee, sc: Syscall) -> None:
        result, groups = self.creds(tracee).getgroups(sc.args[0])
        if groups:
            try:
                tracee.write(sc.args[1], struct.pack(f"<{len(groups)}I", *groups))
            except OSError:
                result = -errno.EFAULT
        sc.skip(result)

    def _setgroups(self, tracee: Tracee, sc: Syscall) -> None:
        size = sc.arg_int(0)
        if size < 0 or size > NGROUPS_MAX:
            sc.skip(-errno.EINVAL)
            return
        groups: list[int] = []
        if size:
            try:
                groups = list(struct.unpack(f"<{size}I", tracee.read(sc.args[1], 4 * size)))
            except OSError:
                sc.skip(-errno.EFAULT)
                return
        sc.skip(self.creds(tracee).setgroups(groups))

    def _cap_header(self, tracee: Tracee, sc: Syscall) -> int | None:
        """Words per set in capget/capset's data for this header, or None: not ours."""
        try:
            version, pid = struct.unpack("<Ii", tracee.read(sc.args[0], 8))
        except OSError:
            return None
        if pid not in (0, tracee.pid) or not sc.args[1]:
            return None
        return {_CAP_V1: 1, _CAP_V2: 2, _CAP_V3: 2}.get(version)

    def _capget(self, tracee: Tracee, sc: Syscall) -> None:
        words = self._cap_header(tracee, sc)
        if words is None:
            return
        c = self.creds(tracee)
        full = _full_caps()
        data = b""
        for i in range(words):
            eff = full[i] if c.cap_effective else 0
            perm = full[i] if c.cap_permitted else 0
            data += struct.pack("<III", eff, perm, 0)
        try:
            tracee.write(sc.args[1], data)
        except OSError:
            sc.skip(-errno.EFAULT)
            return
        sc.skip(0)

    def _capset(self, tracee: Tracee, sc: Syscall) -> None:
        words = self._cap_header(tracee, sc)
        if words is None:
            return
        try:
            raw = struct.unpack(f"<{3 * words}I", tracee.read(sc.args[1], 12 * words))
        except OSError:
            sc.skip(-errno.EFAULT)
            return
        effective = any(raw[3 * i] for i in range(words))
        permitted = any(raw[3 * i + 1] for i in range(words))
        sc.skip(self.creds(tracee).capset(permitted, effective))

    def _prctl(self, tracee: Tracee, sc: Syscall) -> None:
        option = sc.arg_int(0)
        c = self.creds(tracee)
        # PR_SET/GET_DUMPABLE: answered by the engine core (ocirun/engine/loop.py)
        if option == PR_GET_KEEPCAPS:
            sc.skip(int(c.keepcaps))
        elif option == PR_SET_KEEPCAPS:
            if sc.args[1] > 1:
                sc.skip(-errno.EINVAL)
            else:
                c.keepcaps = bool(sc.args[1])
                sc.skip(0)

    def _ok(self, tracee: Tracee, sc: Syscall) -> None:
        if self.creds(tracee).privileged:
            sc.skip(0)

    def _chroot(self, tracee: Tracee, sc: Syscall) -> None:
        host = sc.host_paths.get(0)
        if host and self.creds(tracee).privileged and os.path.realpath(host) == self.rootfs:
            sc.skip(0)

    def _setxattr(self, tracee: Tracee, sc: Syscall) -> None:
        try:
            name = tracee.read_string(sc.args[1], 256)
        except OSError:
            return
        if name.startswith(("security.", "trusted.")) and self.creds(tracee).privileged:
            sc.skip(0)

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
        invalidate(self.engine, host)
        self.db.set_node(st, host, kind | perm, sc.args[dev_arg])
        self.db.set_owner(st, host, self._rec_id(c.fsuid, st.st_uid, True),
                          self._rec_id(c.fsgid, st.st_gid, False))
        sc.skip(0)

    # ---- stat results -----------------------------------------------------------------

    def _stat_enter(self, tracee: Tracee, sc: Syscall) -> None:
        """Answer the stat in the tracer when we can (no exit stop: the guest's stat
        costs what it costs without -0); otherwise fix the result at the exit stop."""
        if _STAT_AT_EXIT or not self._emulate_stat(tracee, sc):
            sc.want_exit()

    def _stat_source(self, tracee: Tracee, sc: Syscall) -> tuple[str, int, int] | None:
        """(host path, flags, statx mask) to stat for the guest, or None: let the kernel."""
        name = sc.name
        pid = tracee.pid
        mask = 0
        if name == "fstat":
            return None if bad_fd(pid, sc.arg_int(0)) else (fd_path(pid, sc.arg_int(0)), 0, 0)
        if name in ("stat", "lstat"):
            path_arg, dirfd_arg, flags = 0, None, 0 if name == "stat" else AT_SYMLINK_NOFOLLOW
        elif name == "newfstatat":
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
        if kind == "stat":
            rc = _libc.syscall(SYS_newfstatat, AT_FDCWD, path, buf, flags)
        else:
            rc = _libc.statx(AT_FDCWD, path, flags, mask, buf)
        if rc != 0:
            sc.skip(-ctypes.get_errno())
            return True
        size = statbuf.STAT_SIZE if kind == "stat" else statbuf.STATX_SIZE
        data = self._patched(buf.raw[:size], kind)
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
        addr = sc.args[index]
        size = statbuf.STAT_SIZE if kind == "stat" else statbuf.STATX_SIZE
        try:
            buf = tracee.read(addr, size)
        except OSError:
            return
        new = self._patched(buf, kind)
        if new != buf:
            try:
                tracee.write(addr, new)
            except OSError:
                pass

    def _patched(self, buf: bytes, kind: str) -> bytes:
        """The guest's view of a stat result: fake ids, then what the database says.
        (The hot path of -0: plain struct unpacking, a dict lookup, no objects.)"""
        btime = None
        if kind == "stat":
            dev, ino, _nlink, _mode, uid, gid = _STAT_HEAD.unpack_from(buf)
        else:
            view = statbuf.parse_statx(buf)
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
        if self.stat_hooks:
            view = statbuf.parse_stat(buf) if kind == "stat" else statbuf.parse_statx(buf)
            for hook in self.stat_hooks:
                changes.update(hook(view))
        if not changes:
            return buf
        patch = statbuf.patch_stat if kind == "stat" else statbuf.patch_statx
        return patch(buf, **changes)

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
            path_arg, flags_arg, fixed = _OPEN[name]
            host = sc.host_paths.get(path_arg)
            if not host:
                return
            if fixed == -1:
                try:
                    flags = tracee.read_u64(sc.args[2])
                except OSError:
                    return
            else:
                flags = fixed or sc.args[flags_arg]
            if flags & O_PATH:
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

    # ---- bookkeeping for the database --------------------------------------------------

    def _note_creation(self, tracee: Tracee, sc: Syscall, c: Creds) -> None:
        name = sc.name
        host = sc.host_paths.get(_CREATES[name])
        if not host:
            return
        if name in _OPEN:
            _, flags_arg, fixed = _OPEN[name]
            if fixed == -1:
                try:
                    flags = tracee.read_u64(sc.args[2])
                except OSError:
                    return
            else:
                flags = fixed or sc.args[flags_arg]
            if not flags & O_CREAT:
                return
        if os.path.lexists(host):
            return
        tracee.data["fake_id0.pending"] = (sc, "create", host, c.fsuid, c.fsgid)
        sc.want_exit()

    def _note_rename(self, tracee: Tracee, sc: Syscall) -> None:
        a, b = _RENAMES[sc.name]
        old, new = sc.host_paths.get(a), sc.host_paths.get(b)
        if not old or not new:
            return
        moves, replaces = self.db.concerns(old), self.db.concerns(new)
        if not moves and not replaces:
            return
        exchange = sc.name == "renameat2" and sc.args[4] & RENAME_EXCHANGE
        replaced = None
        if not exchange and replaces:
            try:
                st = os.lstat(new)
                if self.db.get(st.st_dev, st.st_ino) and (
                        st.st_nlink <= 1 or stat.S_ISDIR(st.st_mode)):
                    replaced = (st.st_dev, st.st_ino)
            except OSError:
                pass
        tracee.data["fake_id0.pending"] = (sc, "rename", old, new, replaced, bool(exchange))
        sc.want_exit()

    def _note_unlink(self, tracee: Tracee, sc: Syscall) -> None:
        host = sc.host_paths.get(_UNLINKS[sc.name])
        if not host or not self.db.concerns(host):
            return
        try:
            st = os.lstat(host)
        except OSError:
            return
        if self.db.get(st.st_dev, st.st_ino) is None:
            return
        if st.st_nlink <= 1 or stat.S_ISDIR(st.st_mode):
            tracee.data["fake_id0.pending"] = (sc, "unlink", (st.st_dev, st.st_ino))
            sc.want_exit()
