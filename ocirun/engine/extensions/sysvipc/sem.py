"""Semaphore sets, kept in the tracer. A semop that cannot proceed holds its caller at
the syscall's entry (Syscall.hold) until another process's operation lets it through
(or IPC_RMID: EIDRM); SEM_UNDO adjustments are applied when the process exits."""

from __future__ import annotations

import errno
import time

from ocirun.engine.extensions.sysvipc.abi import (
    GETALL,
    GETNCNT,
    GETPID,
    GETVAL,
    GETZCNT,
    IPC_64,
    IPC_INFO,
    IPC_NOWAIT,
    IPC_RMID,
    IPC_SET,
    IPC_STAT,
    SEM_INFO,
    SEM_STAT,
    SEM_STAT_ANY,
    SEM_UNDO,
    SEMBUF,
    SEMINFO,
    SEMMNI,
    SEMMSL,
    SEMOPM,
    SEMVMX,
    SETALL,
    SETVAL,
    Perm,
    semid_ds,
)
from ocirun.engine.extensions.sysvipc.table import IpcTable, set_perm, stat_reply
from ocirun.util.records import dataclass, field

TYPE_CHECKING = False  # typing's, without importing typing (start-up time)
if TYPE_CHECKING:
    from ocirun.engine.extension import Engine
    from ocirun.engine.syscall import Syscall
    from ocirun.engine.tracee import Tracee

BLOCK = 1  # _try's answer: the operations must wait


@dataclass
class Waiter:
    tracee: Tracee
    sc: Syscall
    ops: list[tuple[int, int, int]]


@dataclass
class SemSet:
    ident: int
    perm: Perm
    vals: list[int]
    pids: list[int]
    otime: int = 0
    ctime: int = 0
    waiters: list[Waiter] = field(default_factory=list)


class Semaphores:
    """semget/semop/semtimedop/semctl for one run."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.layout = semid_ds(engine.arch.name)
        self.table: IpcTable[SemSet] = IpcTable(SEMMNI)
        self.undo: dict[int, dict[tuple[int, int], int]] = {}  # tgid -> {(set, sem): adjustment}

    def semget(self, t: Tracee, sc: Syscall, perm: Perm) -> int:
        key, nsems, flags = sc.arg_int(0), sc.arg_int(1), sc.arg_int(2)

        def make(ident: int, p: Perm) -> SemSet | int:
            if not 0 < nsems <= SEMMSL:
                return -errno.EINVAL
            return SemSet(ident, p, [0] * nsems, [0] * nsems, ctime=int(time.time()))

        return self.table.get(key, flags, make, perm,
                              lambda s: -errno.EINVAL if nsems > len(s.vals) else 0)

    def semop(self, t: Tracee, sc: Syscall) -> int | None:
        """The result, or None when the caller is held."""
        s = self.table.find(sc.arg_int(0))
        nsops = sc.args[2]
        if s is None:
            return -errno.EINVAL
        if nsops < 1:
            return -errno.EINVAL
        if nsops > SEMOPM:
            return -errno.E2BIG
        raw = t.read(sc.args[1], SEMBUF.size * nsops)
        ops = [SEMBUF.unpack_from(raw, i * SEMBUF.size) for i in range(nsops)]
        if any(num >= len(s.vals) for num, _op, _flg in ops):
            return -errno.EFBIG
        r = self._try(s, ops, t.tgid or t.pid)
        if r != BLOCK:
            if r == 0:
                self._wake(s)
            return r
        if any(flg & IPC_NOWAIT for _num, _op, flg in ops) or self._zero_timeout(t, sc):
            return -errno.EAGAIN
        s.waiters.append(Waiter(t, sc, ops))
        sc.hold()
        return None

    def _zero_timeout(self, t: Tracee, sc: Syscall) -> bool:
        """semtimedop with a zero timeout does not wait (other timeouts are not kept: the
        call waits until it can proceed)."""
        if sc.name != "semtimedop" or not sc.args[3]:
            return False
        return t.read(sc.args[3], 16) == bytes(16)

    def _try(self, s: SemSet, ops: list[tuple[int, int, int]], tgid: int) -> int:
        """Apply all of `ops` or none: 0, -errno, or BLOCK."""
        vals = list(s.vals)
        for num, op, _flg in ops:
            v = vals[num] + op
            if op == 0 and vals[num] != 0 or v < 0:
                return BLOCK
            if v > SEMVMX:
                return -errno.ERANGE
            vals[num] = v
        s.vals = vals
        for num, op, flg in ops:
            s.pids[num] = tgid
            if flg & SEM_UNDO and op:
                adj = self.undo.setdefault(tgid, {})
                adj[(s.ident, num)] = adj.get((s.ident, num), 0) - op
        s.otime = int(time.time())
        return 0

    def _wake(self, s: SemSet) -> None:
        """Let through every held semop the new values allow, in arrival order."""
        progress = True
        while progress:
            progress = False
            for w in list(s.waiters):
                r = self._try(s, w.ops, w.tracee.tgid or w.tracee.pid)
                if r != BLOCK:
                    s.waiters.remove(w)
                    self._release(w, r)
                    progress = True

    def _release(self, w: Waiter, result: int) -> None:
        w.sc.skip(result)
        self.engine.resume(w.tracee)

    def semctl(self, t: Tracee, sc: Syscall) -> int:
        ident, num, cmd, arg = sc.arg_int(0), sc.arg_int(1), sc.arg_int(2) & ~IPC_64, sc.args[3]
        if cmd in (IPC_INFO, SEM_INFO):
            return self.table.info(t, arg, SEMINFO.pack(SEMMNI, SEMMNI, SEMMNI * SEMMSL, SEMMNI * SEMMSL,
                                                         SEMMSL, SEMOPM, SEMOPM, 20, SEMVMX, SEMVMX))
        s = self.table.find(ident)
        if s is None:
            return -errno.EINVAL
        n = len(s.vals)
        if cmd in (IPC_STAT, SEM_STAT, SEM_STAT_ANY):
            return stat_reply(t, arg, cmd, s.ident, self.layout.pack(s.perm.pack(), s.otime, s.ctime, n, 0, 0))
        if cmd == IPC_SET:
            return set_perm(t, arg, s)
        if cmd == IPC_RMID:
            self.table.remove(s.ident, s.perm.key)
            for w in s.waiters:
                self._release(w, -errno.EIDRM)
            s.waiters.clear()
            return 0
        if cmd == GETALL:
            t.write(arg, b"".join(v.to_bytes(2, "little") for v in s.vals))
            return 0
        if cmd == SETALL:
            raw = t.read(arg, 2 * n)
            vals = [int.from_bytes(raw[i:i + 2], "little") for i in range(0, 2 * n, 2)]
            if any(v > SEMVMX for v in vals):
                return -errno.ERANGE
            return self._set(s, range(n), vals, t.tgid or t.pid)
        if not 0 <= num < n:
            return -errno.EINVAL
        if cmd == GETVAL:
            return s.vals[num]
        if cmd == GETPID:
            return s.pids[num]
        if cmd in (GETNCNT, GETZCNT):
            return sum(1 for w in s.waiters for m, op, _f in w.ops
                       if m == num and (op < 0 if cmd == GETNCNT else op == 0))
        if cmd == SETVAL:
            val = arg & 0xFFFFFFFF
            if val > SEMVMX:
                return -errno.ERANGE
            return self._set(s, [num], [val], t.tgid or t.pid)
        return -errno.EINVAL

    def _set(self, s: SemSet, nums, vals: list[int], tgid: int) -> int:
        """SETVAL/SETALL: new values; the undo adjustments of those semaphores are cleared."""
        for num, v in zip(nums, vals, strict=True):
            s.vals[num] = v
            s.pids[num] = tgid
            for adj in self.undo.values():
                adj.pop((s.ident, num), None)
        s.ctime = int(time.time())
        self._wake(s)
        return 0

    def exited(self, t: Tracee) -> None:
        """A process is gone: its held calls and its SEM_UNDO adjustments."""
        for s in self.table.objects.values():
            s.waiters = [w for w in s.waiters if w.tracee is not t]
        if t.pid != (t.tgid or t.pid):
            return
        for (ident, num), adj in self.undo.pop(t.pid, {}).items():
            s = self.table.find(ident)
            if s is not None and adj:
                s.vals[num] = min(max(s.vals[num] + adj, 0), SEMVMX)
                s.pids[num] = t.pid
                self._wake(s)
