"""The fake-root database kept in step with the guest: ownership seeded from the
image's `ownership` file, creations by a non-default fsuid/fsgid, renames and
removals of recorded inodes."""

from __future__ import annotations

import json
import os
import stat

from ocirun.engine.extensions.fake_id0.creds import Creds
from ocirun.engine.extensions.fake_id0.files import open_flags
from ocirun.engine.extensions.fake_id0.tables import (
    _CREATES,
    _OPEN,
    _RENAMES,
    _UNLINKS,
    O_CREAT,
    RENAME_EXCHANGE,
)

TYPE_CHECKING = False  # typing's, without importing typing (start-up time)
if TYPE_CHECKING:
    from ocirun.engine.syscall import Syscall
    from ocirun.engine.tracee import Tracee


class DbRecords:
    """Part of FakeId0 (ocirun/engine/extensions/fake_id0/__init__.py)."""

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
        if not self.engine.lazy_tree:
            return
        host = self.rootfs
        for part in rel.strip("/").split("/")[:-1]:
            host = os.path.join(host, part)
            if os.path.islink(host) or not self.engine.materialise(host):
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

    # ---- bookkeeping for the database --------------------------------------------------

    def _note_creation(self, tracee: Tracee, sc: Syscall, c: Creds) -> None:
        name = sc.name
        host = sc.host_paths.get(_CREATES[name])
        if not host:
            return
        if name in _OPEN:
            flags = open_flags(tracee, sc)
            if flags is None or not flags & O_CREAT:
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
