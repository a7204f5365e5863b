"""Message queues, kept in the tracer. msgsnd on a full queue and msgrcv with no
matching message hold their caller at the syscall's entry (Syscall.hold) until the
other side makes room or sends (or IPC_RMID: EIDRM)."""

from __future__ import annotations

import errno
import struct
import time
from collections.abc import Callable

from ocirun.engine.extensions.sysvipc import abi
from ocirun.engine.extensions.sysvipc.abi import (
    MSG_COPY,
    MSG_EXCEPT,
    MSG_INFO,
    MSG_NOERROR,
    MSG_STAT,
    MSG_STAT_ANY,
    MSGINFO,
    MSGMAX,
    MSGMNB,
    MSGMNI,
    MSQID_DS,
    PERM,
    Perm,
)
from ocirun.engine.extensions.sysvipc.table import IpcTable, stat_reply
from ocirun.util.records import dataclass, field

TYPE_CHECKING = False  # typing's, without importing typing (start-up time)
if TYPE_CHECKING:
    from ocirun.engine.extension import Engine
    from ocirun.engine.syscall import Syscall
    from ocirun.engine.tracee import Tracee


@dataclass
class Queue:
    ident: int
    perm: Perm
    messages: list[tuple[int, bytes]] = field(default_factory=list)
    qbytes: int = MSGMNB
    cbytes: int = 0
    stime: int = 0
    rtime: int = 0
    ctime: int = 0
    lspid: int = 0
    lrpid: int = 0
    waiters: list[tuple[Tracee, Syscall, Callable[[], int | None]]] = field(default_factory=list)

    def pack(self) -> bytes:
        return MSQID_DS.pack(self.perm.pack(), self.stime, self.rtime, self.ctime, self.cbytes,
                             len(self.messages), self.qbytes, self.lspid, self.lrpid, 0, 0)


class MessageQueues:
    """msgget/msgsnd/msgrcv/msgctl for one run."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.table: IpcTable[Queue] = IpcTable(MSGMNI)

    def msgget(self, t: Tracee, sc: Syscall, perm: Perm) -> int:
        return self.table.get(sc.arg_int(0), sc.arg_int(1),
                              lambda ident, p: Queue(ident, p, ctime=int(time.time())), perm)

    def msgsnd(self, t: Tracee, sc: Syscall) -> int | None:
        q = self.table.find(sc.arg_int(0))
        size, flags = sc.args[2], sc.arg_int(3)
        if q is None:
            return -errno.EINVAL
        if size > MSGMAX:
            return -errno.EINVAL
        raw = t.read(sc.args[1], 8 + size)
        (mtype,) = struct.unpack_from("<q", raw)
        if mtype < 1:
            return -errno.EINVAL
        pid = t.tgid or t.pid

        def attempt() -> int | None:
            if q.cbytes + size > q.qbytes or len(q.messages) >= q.qbytes:
                return None
            q.messages.append((mtype, raw[8:]))
            q.cbytes += size
            q.lspid, q.stime = pid, int(time.time())
            return 0

        return self._run(q, t, sc, attempt, flags)

    def msgrcv(self, t: Tracee, sc: Syscall) -> int | None:
        q = self.table.find(sc.arg_int(0))
        buf, size, mtype, flags = sc.args[1], sc.args[2], sc.args[3], sc.arg_int(4)
        mtype = mtype - (1 << 64) if mtype >> 63 else mtype
        if q is None or size >> 63:
            return -errno.EINVAL
        if flags & MSG_COPY:
            return -errno.ENOSYS  # checkpoint/restore's peek: not emulated
        pid = t.tgid or t.pid

        def attempt() -> int | None:
            i = _pick(q.messages, mtype, flags)
            if i is None:
                return None
            kind, text = q.messages[i]
            if len(text) > size and not flags & MSG_NOERROR:
                return -errno.E2BIG
            del q.messages[i]
            q.cbytes -= len(text)
            q.lrpid, q.rtime = pid, int(time.time())
            t.write(buf, struct.pack("<q", kind) + text[:size])
            return min(len(text), size)

        return self._run(q, t, sc, attempt, flags)

    def _run(self, q: Queue, t: Tracee, sc: Syscall, attempt: Callable[[], int | None],
             flags: int) -> int | None:
        """Do it now, or fail with IPC_NOWAIT, or hold the caller until it can be done."""
        r = attempt()
        if r is None:
            if flags & abi.IPC_NOWAIT:
                return -errno.EAGAIN if sc.name == "msgsnd" else -errno.ENOMSG
            q.waiters.append((t, sc, attempt))
            sc.hold()
            return None
        self._wake(q)
        return r

    def _wake(self, q: Queue) -> None:
        """Retry the held calls of `q` in arrival order while any can proceed."""
        progress = True
        while progress:
            progress = False
            for w in list(q.waiters):
                r = w[2]()
                if r is not None:
                    q.waiters.remove(w)
                    w[1].skip(r)
                    self.engine.resume(w[0])
                    progress = True

    def msgctl(self, t: Tracee, sc: Syscall) -> int:
        ident, cmd, buf = sc.arg_int(0), sc.arg_int(1) & ~abi.IPC_64, sc.args[2]
        if cmd in (abi.IPC_INFO, MSG_INFO):
            return self.table.info(t, buf, MSGINFO.pack(MSGMNI * MSGMNB // 1024, MSGMNI * MSGMNB // 16, MSGMAX,
                                                        MSGMNB, MSGMNI, 16, MSGMNB, 0xFFFF))
        q = self.table.find(ident)
        if q is None:
            return -errno.EINVAL
        if cmd in (abi.IPC_STAT, MSG_STAT, MSG_STAT_ANY):
            return stat_reply(t, buf, cmd, q.ident, q.pack())
        if cmd == abi.IPC_SET:
            raw = t.read(buf, MSQID_DS.size)
            q.perm.set_from(raw[:PERM.size])
            q.qbytes = MSQID_DS.unpack(raw)[6]
            q.ctime = int(time.time())
            self._wake(q)
            return 0
        if cmd == abi.IPC_RMID:
            self.table.remove(q.ident, q.perm.key)
            for w in q.waiters:
                w[1].skip(-errno.EIDRM)
                self.engine.resume(w[0])
            q.waiters.clear()
            return 0
        return -errno.EINVAL

    def exited(self, t: Tracee) -> None:
        for q in self.table.objects.values():
            q.waiters = [w for w in q.waiters if w[0] is not t]


def _pick(messages: list[tuple[int, bytes]], mtype: int, flags: int) -> int | None:
    """msgrcv's choice: 0 the first message; >0 the first of that type (MSG_EXCEPT: of
    another type); <0 the first of the lowest type not above -mtype."""
    if mtype == 0:
        return 0 if messages else None
    if mtype > 0:
        for i, (kind, _text) in enumerate(messages):
            if (kind != mtype) if flags & MSG_EXCEPT else (kind == mtype):
                return i
        return None
    best = None
    for i, (kind, _text) in enumerate(messages):
        if kind <= -mtype and (best is None or kind < messages[best][0]):
            best = i
    return best
