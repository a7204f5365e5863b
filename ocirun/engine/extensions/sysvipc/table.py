"""One IPC namespace's objects of one kind (segments, semaphore sets or queues):
keys to ids, ids to objects, and the *get() rules every kind shares."""

from __future__ import annotations

import errno
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ocirun.engine.extensions.sysvipc.abi import (
    IPC_CREAT,
    IPC_EXCL,
    IPC_PRIVATE,
    IPC_STAT,
    PERM,
    Perm,
)

if TYPE_CHECKING:
    from ocirun.engine.tracee import Tracee

T = TypeVar("T")


class IpcTable(Generic[T]):
    """Objects by id; `get` follows shmget/semget/msgget: IPC_PRIVATE always makes a new
    object, IPC_CREAT|IPC_EXCL on an existing key is EEXIST, a missing key without
    IPC_CREAT is ENOENT. Ids start at 1 and are not reused within a run."""

    def __init__(self, limit: int):
        self.objects: dict[int, T] = {}
        self.keys: dict[int, int] = {}
        self.limit = limit
        self._next = 1

    def get(self, key: int, flags: int, make: Callable[[int, Perm], T], perm: Perm,
            check: Callable[[T], int] = lambda obj: 0) -> int:
        """The id for `key`, or -errno. `make(id, perm)` builds a new object; `check(obj)`
        says whether an existing one fits the request (0, or -errno)."""
        if key != IPC_PRIVATE and key in self.keys:
            if flags & IPC_CREAT and flags & IPC_EXCL:
                return -errno.EEXIST
            ident = self.keys[key]
            return check(self.objects[ident]) or ident
        if key != IPC_PRIVATE and not flags & IPC_CREAT:
            return -errno.ENOENT
        if len(self.objects) >= self.limit:
            return -errno.ENOSPC
        ident = self._next
        self._next += 1
        perm.mode = flags & 0o777
        obj = make(ident, perm)
        if isinstance(obj, int):  # make refused: -errno
            return obj
        self.objects[ident] = obj
        if key != IPC_PRIVATE:
            self.keys[key] = ident
        return ident

    def find(self, ident: int) -> T | None:
        return self.objects.get(ident)

    def remove(self, ident: int, key: int) -> None:
        """IPC_RMID: the id and the key are gone at once (an attached segment lives on)."""
        self.objects.pop(ident, None)
        if key != IPC_PRIVATE and self.keys.get(key) == ident:
            del self.keys[key]

    # ---- the *ctl() commands every kind answers alike ----------------------------------------
    def info(self, t: Tracee, buf: int, limits: bytes) -> int:
        """IPC_INFO and the kind's *_INFO: the limits written to the guest, the highest id."""
        t.write(buf, limits)
        return max(self.objects, default=0)


def stat_reply(t: Tracee, buf: int, cmd: int, ident: int, ds: bytes) -> int:
    """IPC_STAT (0) or the kind's *_STAT/*_STAT_ANY (the id): its *id_ds written to the guest."""
    t.write(buf, ds)
    return ident if cmd != IPC_STAT else 0


def set_perm(t: Tracee, buf: int, obj: Any) -> int:
    """IPC_SET of a segment or a semaphore set: the owner and mode from the guest's ipc_perm."""
    obj.perm.set_from(t.read(buf, PERM.size))
    obj.ctime = int(time.time())
    return 0
