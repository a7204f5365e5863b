"""The fake root's stat family answered by the compiled fast path (ocirun/engine/_fakeroot.c).

The fast path stats the host file and patches the result as StatCalls._patched does,
from a mirror of the fake-root database's cache kept here: FakeRootDB tells every
change of its cache (RecordMirror) before the tracer handles the next stop, and when
its next look for other engines' commits is due, so that the stat after that time
goes to Python, which looks (and pushes what changed). The get*id calls are answered
from each thread's ids as Python last knew them (mirror_ids). Opens and access calls are
the core's plain ones when the fake root has nothing to do (no O_CREAT, and the real
user has the rights, or is root): the fast path checks that with one access(2)."""

from __future__ import annotations

from types import ModuleType

from ocirun.engine.extensions.fake_id0.tables import _ACCESS, _STAT_AT_EXIT

TYPE_CHECKING = False  # typing's, without importing typing (start-up time)
if TYPE_CHECKING:
    from ocirun.engine.extensions.fake_id0 import FakeId0
    from ocirun.engine.extensions.fake_id0.fakeroot_db import FakeRootDB, Record
    from ocirun.engine.tracee import Tracee

# The native stat syscalls, by the argument layout _fakeroot.c knows them by
KINDS = {"stat": 1, "lstat": 2, "fstat": 3, "newfstatat": 4, "statx": 5}
IDS = {"getuid": 6, "geteuid": 7, "getgid": 8, "getegid": 9}  # answered from mirror_ids
G_OPEN, G_ACCESS = 1, 2  # fr_guard: the fake root's part of an open, of an access call


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


def use_fast_path(ext: FakeId0, fast: ModuleType | None) -> frozenset[str]:
    """Let the fast path answer the stat family with `ext`'s ids and records, and take
    the opens and access calls the fake root has nothing to do for (None: stop).
    Returns those syscalls, which the fast path translates as the core's."""
    db, engine = ext.db, ext.engine
    if db is None or engine is None:
        return frozenset()
    ext.fast = fast
    if fast is None:
        db.set_mirror(None)
        return frozenset()
    fast.fr_config(ext.real_uid, ext.real_gid, ext.fuid & 0xFFFFFFFF, ext.fgid & 0xFFFFFFFF)
    if not _STAT_AT_EXIT and not engine.changes_stats:  # (else: fixed at the exit stop, or by others too)
        db.set_mirror(FastRecords(fast))
        for name, kind in KINDS.items():
            if name in engine.names:
                fast.fr_syscall(engine.names[name], kind)
    for name, kind in IDS.items():
        fast.fr_syscall(engine.names[name], kind)
    shared = []
    for name, guard, arg in (*((n, G_OPEN, 0) for n in ("open", "openat")),
                             *((n, G_ACCESS, a[2]) for n, a in _ACCESS.items())):
        if name in engine.names:
            fast.fr_guard(engine.names[name], guard, arg)
            shared.append(name)
    return frozenset(shared)


def mirror_ids(ext: FakeId0, tracee: Tracee) -> None:
    """Give the fast path the ids a thread's get*id calls answer (after it answered or
    changed them, or the thread appeared); its forget(pid) drops them at exit and exec."""
    if ext.fast is not None:
        c = ext.creds(tracee)
        ext.fast.fr_set_ids(tracee.pid, c.ruid & _U32, c.euid & _U32, c.rgid & _U32, c.egid & _U32)


_U32 = 0xFFFFFFFF
