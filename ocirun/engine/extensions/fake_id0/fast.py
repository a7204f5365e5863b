"""The fake root's stat family answered by the compiled fast path (ocirun/engine/_fakeroot.c).

The fast path stats the host file and patches the result as StatCalls._patched does,
from a mirror of the fake-root database's cache kept here: FakeRootDB tells every
change of its cache (RecordMirror) before the tracer handles the next stop, and when
its next look for other engines' commits is due, so that the stat after that time
goes to Python, which looks (and pushes what changed)."""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING

from ocirun.engine.extensions.fake_id0.tables import _STAT_AT_EXIT

if TYPE_CHECKING:
    from ocirun.engine.extensions.fake_id0 import FakeId0
    from ocirun.engine.extensions.fake_id0.fakeroot_db import FakeRootDB, Record

# The native stat syscalls, by the argument layout _fakeroot.c knows them by
KINDS = {"stat": 1, "lstat": 2, "fstat": 3, "newfstatat": 4, "statx": 5}


class FastRecords:
    """A RecordMirror (fakeroot_db.py) in the compiled fast path's tables."""

    def __init__(self, fast: ModuleType):
        self.fast = fast

    def put(self, key: tuple[int, int], rec: Record | None) -> None:
        if rec is None:
            self.fast.fr_forget(*key)
        else:
            self.fast.fr_put(*key, rec.btime, rec.uid, rec.gid, rec.mode, rec.rdev)

    def reload(self, db: FakeRootDB) -> None:
        self.fast.fr_clear()
        for key, rec in db.known().items():
            self.put(key, rec)

    def until(self, deadline: float) -> None:
        self.fast.fr_until(deadline)


def use_fast_path(ext: FakeId0, fast: ModuleType | None) -> None:
    """Let the fast path answer the stat family with `ext`'s ids and records (None: stop)."""
    db = ext.db
    if db is None:
        return
    if fast is None:
        db.set_mirror(None)
        return
    engine = ext.engine
    if _STAT_AT_EXIT or engine is None or engine.changes_stats:
        return  # results fixed at the exit stop, or other extensions' changes: Python's
    fast.fr_config(ext.real_uid, ext.real_gid, ext.fuid & 0xFFFFFFFF, ext.fgid & 0xFFFFFFFF)
    db.set_mirror(FastRecords(fast))
    for name, kind in KINDS.items():
        nr = engine.names.get(name)
        if nr is not None:
            fast.fr_syscall(nr, kind)
