"""SysV IPC as the kernel's ABI has it: flags, commands and the `*id64_ds` structures
the guest reads and writes (IPC_STAT, IPC_SET), per architecture where they differ.

Every 64-bit architecture uses asm-generic's ipc64_perm, shmid64_ds and msqid64_ds;
x86_64 pads semid64_ds (arch/x86/include/uapi/asm/sembuf.h), so its offsets are a table.
"""

from __future__ import annotations

import struct

from ocirun.util.records import dataclass

IPC_PRIVATE = 0
IPC_CREAT, IPC_EXCL, IPC_NOWAIT = 0o1000, 0o2000, 0o4000
IPC_RMID, IPC_SET, IPC_STAT, IPC_INFO = 0, 1, 2, 3
IPC_64 = 0x100  # glibc ORs it into cmd on some architectures: the 64-bit structures
SHM_RDONLY, SHM_RND, SHM_REMAP, SHM_EXEC = 0o10000, 0o20000, 0o40000, 0o100000
SHM_LOCK, SHM_UNLOCK, SHM_STAT, SHM_INFO, SHM_STAT_ANY = 11, 12, 13, 14, 15
GETPID, GETVAL, GETALL, GETNCNT, GETZCNT, SETVAL, SETALL = 11, 12, 13, 14, 15, 16, 17
SEM_STAT, SEM_INFO, SEM_STAT_ANY = 18, 19, 20
SEM_UNDO = 0x1000
MSG_STAT, MSG_INFO, MSG_STAT_ANY = 11, 12, 13
MSG_NOERROR, MSG_EXCEPT, MSG_COPY = 0o10000, 0o20000, 0o40000
# the kernel's default limits (include/uapi/linux/{sem,msg,shm}.h)
SEMMSL, SEMOPM, SEMVMX, SEMMNI = 32000, 500, 32767, 32000
MSGMAX, MSGMNB, MSGMNI = 8192, 16384, 32000
SHMMNI = 4096

PERM = struct.Struct("<iIIIIIHH4xQQ")  # ipc64_perm: key uid gid cuid cgid mode seq
PERM_UID, PERM_GID, PERM_MODE = 4, 8, 20


@dataclass
class Perm:
    """The ipc64_perm of one object."""

    key: int
    uid: int
    gid: int
    mode: int
    cuid: int = 0
    cgid: int = 0

    def __post_init__(self) -> None:
        self.cuid, self.cgid = self.uid, self.gid

    def pack(self) -> bytes:
        return PERM.pack(self.key, self.uid, self.gid, self.cuid, self.cgid, self.mode & 0o7777, 0, 0, 0, 0)

    def set_from(self, buf: bytes) -> None:
        """IPC_SET: owner and the permission bits from the guest's structure."""
        self.uid, self.gid = struct.unpack_from("<II", buf, PERM_UID)
        (mode,) = struct.unpack_from("<I", buf, PERM_MODE)
        self.mode = (self.mode & ~0o777) | (mode & 0o777)


# shmid64_ds: perm, segsz, atime, dtime, ctime, cpid, lpid, nattch, 2 unused
SHMID_DS = struct.Struct("<48sQqqqiiQQQ")
# msqid64_ds: perm, stime, rtime, ctime, cbytes, qnum, qbytes, lspid, lrpid, 2 unused
MSQID_DS = struct.Struct("<48sqqqQQQiiQQ")
SEMID_DS = {  # semid64_ds: perm, otime, ctime, nsems (+ padding)
    "x86_64": struct.Struct("<48sq8xq8xQQQ"),
    "aarch64": struct.Struct("<48sqqQQQ"),
}
SEMBUF = struct.Struct("<Hhh")  # struct sembuf: sem_num, sem_op, sem_flg
SEMINFO = struct.Struct("<10i")  # semmap semmni semmns semmnu semmsl semopm semume semusz semvmx semaem
MSGINFO = struct.Struct("<7iH2x")  # msgpool msgmap msgmax msgmnb msgmni msgssz msgtql msgseg
SHMINFO = struct.Struct("<5Q4Q")  # shmmax shmmin shmmni shmseg shmall, 4 unused


def semid_ds(arch: str) -> struct.Struct:
    return SEMID_DS[arch]
