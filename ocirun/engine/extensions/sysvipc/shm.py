"""Shared memory segments: a file per segment under the run's private directory, mapped
into the guest by the guest itself. shmat becomes openat(file) at its entry, then the
tracer chains mmap(fd) and close(fd) (Syscall.chain) and returns the address; shmdt
becomes munmap. Attachments are counted per process (fork copies them, exec and exit
drop them), so shm_nattch and the removal of a segment marked IPC_RMID are the
kernel's."""

from __future__ import annotations

import errno
import mmap
import os
import time

from ocirun.engine.extensions.sysvipc.abi import (
    IPC_64,
    IPC_INFO,
    IPC_RMID,
    IPC_SET,
    IPC_STAT,
    SHM_EXEC,
    SHM_INFO,
    SHM_LOCK,
    SHM_RDONLY,
    SHM_REMAP,
    SHM_RND,
    SHM_STAT,
    SHM_STAT_ANY,
    SHM_UNLOCK,
    SHMID_DS,
    SHMINFO,
    SHMMNI,
    Perm,
)
from ocirun.engine.extensions.sysvipc.table import IpcTable, set_perm, stat_reply
from ocirun.util.linux import AT_FDCWD
from ocirun.util.records import dataclass

TYPE_CHECKING = False  # typing's, without importing typing (start-up time)
if TYPE_CHECKING:
    from ocirun.engine.syscall import Syscall
    from ocirun.engine.tracee import Tracee

PAGE = mmap.PAGESIZE
MAP_SHARED, MAP_FIXED, MAP_FIXED_NOREPLACE = 0x01, 0x10, 0x100000
O_CLOEXEC = os.O_CLOEXEC
SHMMAX = (1 << 63) - (1 << 24)


@dataclass
class Segment:
    ident: int
    perm: Perm
    size: int
    path: str
    cpid: int
    lpid: int = 0
    atime: int = 0
    dtime: int = 0
    ctime: int = 0
    nattch: int = 0
    removed: bool = False

    def pack(self) -> bytes:
        return SHMID_DS.pack(self.perm.pack(), self.size, self.atime, self.dtime, self.ctime,
                             self.cpid, self.lpid, self.nattch, 0, 0)


class SharedMemory:
    """shmget/shmat/shmdt/shmctl for one run."""

    def __init__(self, directory: str, names: dict[str, int]):
        self.dir = directory
        self.names = names
        self.table: IpcTable[Segment] = IpcTable(SHMMNI)
        self.attached: dict[int, dict[int, int]] = {}  # tgid -> {address: segment id}

    # ---- shmget / shmctl: answered in the tracer ----------------------------------------
    def shmget(self, t: Tracee, sc: Syscall, perm: Perm) -> int:
        key, size, flags = sc.arg_int(0), sc.args[1], sc.arg_int(2)

        def make(ident: int, p: Perm) -> Segment | int:
            if size < 1 or size > SHMMAX:
                return -errno.EINVAL
            path = os.path.join(self.dir, f"shm-{ident}")
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
            try:
                os.ftruncate(fd, size)
            finally:
                os.close(fd)
            return Segment(ident, p, size, path, t.tgid or t.pid, ctime=int(time.time()))

        return self.table.get(key, flags, make, perm,
                              lambda seg: -errno.EINVAL if size > seg.size else 0)

    def shmctl(self, t: Tracee, sc: Syscall) -> int:
        ident, cmd, buf = sc.arg_int(0), sc.arg_int(1) & ~IPC_64, sc.args[2]
        if cmd in (IPC_INFO, SHM_INFO):
            return self.table.info(t, buf, SHMINFO.pack(SHMMAX, 1, SHMMNI, SHMMNI, SHMMAX // PAGE, 0, 0, 0, 0))
        seg = self.table.find(ident)
        if seg is None:
            return -errno.EINVAL
        if cmd in (IPC_STAT, SHM_STAT, SHM_STAT_ANY):
            return stat_reply(t, buf, cmd, seg.ident, seg.pack())
        if cmd == IPC_SET:
            return set_perm(t, buf, seg)
        if cmd == IPC_RMID:
            seg.removed = True
            seg.perm.mode |= 0o1000  # SHM_DEST, as the kernel shows it
            self.table.keys.pop(seg.perm.key, None)
            seg.perm.key = 0
            self._maybe_destroy(seg)
            return 0
        if cmd in (SHM_LOCK, SHM_UNLOCK):
            return 0
        return -errno.EINVAL

    # ---- shmat: openat, then mmap and close chained ---------------------------------------
    def shmat_enter(self, t: Tracee, sc: Syscall) -> None:
        seg = self.table.find(sc.arg_int(0))
        addr, flags = sc.args[1], sc.arg_int(2)
        if seg is None:
            sc.skip(-errno.EINVAL)
            return
        if addr and addr % PAGE:
            if not flags & SHM_RND:
                sc.skip(-errno.EINVAL)
                return
            addr -= addr % PAGE
        prot = mmap.PROT_READ | (0 if flags & SHM_RDONLY else mmap.PROT_WRITE)
        prot |= mmap.PROT_EXEC if flags & SHM_EXEC else 0
        mflags = MAP_SHARED | ((MAP_FIXED if flags & SHM_REMAP else MAP_FIXED_NOREPLACE) if addr else 0)
        path = sc.push_string(seg.path)
        sc.arch.regs.set_nr(t.pid, self.names["openat"])
        sc.set_arg(0, AT_FDCWD)
        sc.set_arg(1, path)
        sc.set_arg(2, (os.O_RDONLY if flags & SHM_RDONLY else os.O_RDWR) | O_CLOEXEC)
        sc.set_arg(3, 0)
        sc.notes["shmat"] = ["open", seg, addr, prot, mflags, -1, 0]
        sc.want_exit()

    def shmat_exit(self, t: Tracee, sc: Syscall) -> None:
        state = sc.notes["shmat"]
        phase, seg, addr, prot, mflags, fd, mapped = state
        if phase == "open" and sc.result >= 0:
            state[0], state[5] = "mmap", sc.result
            sc.chain(self.names["mmap"], (addr, seg.size, prot, mflags, sc.result, 0))
            return
        if phase == "mmap":
            state[0], state[6] = "close", sc.result
            sc.chain(self.names["close"], (fd, 0, 0, 0, 0, 0))
            return
        result = sc.result if phase == "open" else mapped
        for i in range(6):
            sc.set_arg(i, sc.orig_args[i])
        if result == -errno.EEXIST:
            result = -errno.EINVAL  # an address in use without SHM_REMAP
        elif phase == "open" and result == -errno.ENOENT:
            result = -errno.EIDRM
        elif result >= 0:
            self._attach(t.tgid or t.pid, result, seg)
        sc.set_result(result)

    # ---- shmdt: munmap ---------------------------------------------------------------------
    def shmdt_enter(self, t: Tracee, sc: Syscall) -> None:
        addr = sc.args[0]
        ident = self.attached.get(t.tgid or t.pid, {}).get(addr)
        seg = self.table.find(ident) if ident is not None else None
        if seg is None:
            sc.skip(-errno.EINVAL)
            return
        sc.arch.regs.set_nr(t.pid, self.names["munmap"])
        sc.set_arg(1, seg.size)
        sc.notes["shmdt"] = seg
        sc.want_exit()

    def shmdt_exit(self, t: Tracee, sc: Syscall) -> None:
        seg = sc.notes["shmdt"]
        sc.set_arg(1, sc.orig_args[1])
        if sc.result == 0:
            self._detach(t.tgid or t.pid, sc.args[0], seg.ident)

    # ---- processes ---------------------------------------------------------------------------
    def forked(self, parent: int, child: int) -> None:
        """A new process inherits its parent's attachments (fork copies the mappings)."""
        maps = dict(self.attached.get(parent, {}))
        if maps:
            self.attached[child] = maps
            for ident in maps.values():
                seg = self.table.find(ident)
                if seg is not None:
                    seg.nattch += 1

    def gone(self, tgid: int) -> None:
        """Exec or exit: the process's mappings are gone."""
        for addr, ident in list(self.attached.get(tgid, {}).items()):
            self._detach(tgid, addr, ident)
        self.attached.pop(tgid, None)

    def close(self) -> None:
        for seg in list(self.table.objects.values()):
            _unlink(seg.path)
        self.table.objects.clear()

    def _attach(self, tgid: int, addr: int, seg: Segment) -> None:
        self.attached.setdefault(tgid, {})[addr] = seg.ident
        seg.nattch += 1
        seg.lpid, seg.atime = tgid, int(time.time())

    def _detach(self, tgid: int, addr: int, ident: int) -> None:
        self.attached.get(tgid, {}).pop(addr, None)
        seg = self.table.find(ident)
        if seg is not None:
            seg.nattch -= 1
            seg.lpid, seg.dtime = tgid, int(time.time())
            self._maybe_destroy(seg)

    def _maybe_destroy(self, seg: Segment) -> None:
        if seg.removed and seg.nattch <= 0:
            self.table.objects.pop(seg.ident, None)
            _unlink(seg.path)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
