"""`-0`/`-i uid:gid`: the current user appears as another user, root by default.

What the guest sees:
- get*id / getgroups / the auxv AT_*UID/GID answer from an emulated set of
  credentials per process (ocirun.engine.extensions.fake_id0.creds): the set*id family
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
import os
import sqlite3
import stat
from collections.abc import Callable

from ocirun.engine.extension import Extension
from ocirun.engine.extensions.fake_id0.creds import Creds
from ocirun.engine.extensions.fake_id0.fakeroot_db import FakeRootDB, open_db
from ocirun.engine.extensions.fake_id0.fast import mirror_ids, use_fast_path
from ocirun.engine.extensions.fake_id0.files import FileCalls
from ocirun.engine.extensions.fake_id0.ids import IdCalls
from ocirun.engine.extensions.fake_id0.records import DbRecords
from ocirun.engine.extensions.fake_id0.stats import StatCalls
from ocirun.engine.extensions.fake_id0.tables import (
    _ACCESS,
    _ALWAYS_OK,
    _CHMOD,
    _CHOWN,
    _CREATES,
    _ID_GETTERS,
    _ID_SETTERS,
    _MKNOD,
    _RENAMES,
    _STAT,
    _UNLINKS,
    _XATTR_SET,
    SYSCALLS,
    StatAbi,
    stat_abi,
)
from ocirun.engine.extensions.shared import statbuf
from ocirun.engine.extensions.shared.common import (
    guest_to_host,
    host_errors_reported,
    patch_auxv,
)
from ocirun.util.linux import AT_EGID, AT_EUID, AT_GID, AT_UID
from ocirun.util.log import log

TYPE_CHECKING = False  # typing's, without importing typing (start-up time)
if TYPE_CHECKING:
    from types import ModuleType

    from ocirun.engine.extension import Engine
    from ocirun.engine.syscall import Syscall
    from ocirun.engine.tracee import Tracee


class FakeId0(IdCalls, FileCalls, StatCalls, DbRecords, Extension):
    """`-0` (uid=gid=0) and `-i uid:gid`."""

    name = "fake_id0"
    syscalls = SYSCALLS
    answers_stat = True
    # Its hooks see only SYSCALLS (with their host paths), forks, execs and the core's
    # lookups that meet a directory the real user cannot search (lend_search), which
    # the fast path leaves to Python: the fast path may run, and answers stats (fast.py).
    only_own_syscalls = True
    fork_hook_later = True  # on_fork copies the parent's credentials: the ones it had at the fork

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
        self.rootfs = "/"
        self.engine: Engine | None = None
        self.fast: ModuleType | None = None  # the compiled fast path, when it runs beside (fast.py)
        self._statbuf = ctypes.create_string_buffer(statbuf.STATX_SIZE)
        self.stat_abi: StatAbi = stat_abi("x86_64")  # replaced by the engine's at attach
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

    def attach(self, engine: Engine) -> None:
        self.engine = engine
        self.stat_abi = stat_abi(engine.arch.name)
        # The runner's containers share files with their image (hard links, copied up
        # before a write by the copy-up extension, which runs first).
        self._shares_inodes = engine.shares_inodes
        self.rootfs = os.path.realpath(engine.plan.rootfs)
        self.db, warning = open_db(self.rootfs, self.db_path)
        if warning and engine.verbose >= 0:
            log.warning(warning)
        try:
            self.db.revalidate()
        except (OSError, sqlite3.Error):
            pass
        self._seed()

    def use_fast_path(self, fast: ModuleType | None) -> frozenset[str]:
        return use_fast_path(self, fast)

    def detach(self, engine: Engine) -> None:
        if self.db is not None:
            self.db.close()

    # ---- what other extensions tell (ocirun/engine/extension.py) ----------------------

    def on_host_rename(self, old: str, new: str) -> None:
        if self.db is not None:
            self.db.renamed(old, new)

    def on_inode_gone(self, st: os.stat_result) -> None:
        if self.db is not None:
            self.db.forget(st.st_dev, st.st_ino)

    def fake_euid(self, tracee: Tracee) -> int | None:
        return self.creds(tracee).euid

    def before_host_change(self, tracee: Tracee, hosts: tuple[str, ...]) -> None:
        """Under -0, give the real user the write access root would have on the
        directories another extension is about to change itself."""
        if self.db is not None and self.creds(tracee).fsuid == 0:
            for h in hosts:
                parent = os.path.dirname(h.rstrip("/")) or "/"
                if not os.access(parent, os.W_OK | os.X_OK):
                    self._grant_parent(h)

    def creds(self, tracee: Tracee) -> Creds:
        c = tracee.data.get("fake_id0.creds")
        if c is None:
            parent = tracee.parent.data.get("fake_id0.creds") if tracee.parent else None
            c = parent.copy() if parent else Creds.initial(self.uid, self.gid)
            tracee.data["fake_id0.creds"] = c
        return c

    def on_fork(self, parent: Tracee, child: Tracee) -> None:
        child.data["fake_id0.creds"] = self.creds(parent).copy()
        mirror_ids(self, child)

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
        mirror_ids(self, tracee)
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

    @host_errors_reported(sqlite3.Error)
    def on_enter(self, tracee: Tracee, sc: Syscall) -> None:
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

    @host_errors_reported(sqlite3.Error)
    def on_exit(self, tracee: Tracee, sc: Syscall) -> None:
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
