"""SysV IPC for guests on hosts without it (Android: CONFIG_SYSVIPC is off, the calls
fail with ENOSYS), as Termux's PRoot emulates it.

One IPC namespace per run, kept in the tracer: semaphore sets and message queues are
plain objects, and a call that must wait (semop, msgsnd on a full queue, msgrcv) holds
its caller at the syscall's entry until another guest process's call lets it through.
Shared memory segments are files in a private directory of the run, which the guest
maps itself (shm.py). The calls never reach the kernel.

Turned on by `build` when a probe shmget() in the tracer fails (ENOSYS/EPERM), or by
OCIRUN_SYSVIPC=1 (0: never). Not emulated: semtimedop's non-zero timeouts (the call
waits until it can proceed), msgrcv's MSG_COPY, /proc/sysvipc/*; a held call is not
interrupted by a signal until it proceeds (SIGKILL still ends the process).
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Callable

from ocirun.engine.extension import Extension
from ocirun.engine.extensions.sysvipc.abi import Perm
from ocirun.engine.extensions.sysvipc.msg import MessageQueues
from ocirun.engine.extensions.sysvipc.sem import Semaphores
from ocirun.engine.extensions.sysvipc.shm import SharedMemory

TYPE_CHECKING = False  # typing's, without importing typing (start-up time)
if TYPE_CHECKING:
    from ocirun.engine.extension import Engine
    from ocirun.engine.syscall import Syscall
    from ocirun.engine.tracee import Tracee

SYSCALLS = frozenset({"shmget", "shmat", "shmdt", "shmctl", "semget", "semop", "semtimedop",
                      "semctl", "msgget", "msgsnd", "msgrcv", "msgctl"})


class SysvIpc(Extension):
    """shm*, sem*, msg* answered by the tracer."""

    name = "sysvipc"
    syscalls = SYSCALLS

    def __init__(self, tmp_dir: str | None = None):
        self.tmp_dir = tmp_dir
        self.dir = ""

    def attach(self, engine: Engine) -> None:
        self.engine = engine
        self.dir = tempfile.mkdtemp(prefix="ocirun-sysvipc-", dir=self.tmp_dir)
        self.shm = SharedMemory(self.dir, engine.names)
        self.sem = Semaphores(engine)
        self.msg = MessageQueues(engine)
        self._answers: dict[str, Callable[[Tracee, Syscall], int | None]] = {
            "shmget": lambda t, sc: self.shm.shmget(t, sc, self._perm(t, sc)),
            "shmctl": self.shm.shmctl,
            "semget": lambda t, sc: self.sem.semget(t, sc, self._perm(t, sc)),
            "semop": self.sem.semop,
            "semtimedop": self.sem.semop,
            "semctl": self.sem.semctl,
            "msgget": lambda t, sc: self.msg.msgget(t, sc, self._perm(t, sc)),
            "msgsnd": self.msg.msgsnd,
            "msgrcv": self.msg.msgrcv,
            "msgctl": self.msg.msgctl,
        }

    def detach(self, engine: Engine) -> None:
        self.shm.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _perm(self, t: Tracee, sc: Syscall) -> Perm:
        uid = self.engine.guest_euid(t)
        return Perm(key=sc.arg_int(0), uid=uid, gid=0 if uid == 0 else os.getgid(), mode=0)

    def on_enter(self, tracee: Tracee, sc: Syscall) -> None:
        if sc.arch is not self.engine.arch:
            return  # i386 on x86_64: its structures are 32-bit ones (not emulated)
        name = sc.name
        if name == "shmat":
            self.shm.shmat_enter(tracee, sc)
            return
        if name == "shmdt":
            self.shm.shmdt_enter(tracee, sc)
            return
        answer = self._answers.get(name)
        if answer is None:
            return
        try:
            result = answer(tracee, sc)
        except OSError as exc:  # the guest's pointer (EFAULT), or the host's disk
            result = -(errno.EFAULT if exc.errno in (errno.EFAULT, errno.ESRCH, errno.EIO) else exc.errno)
        if result is not None:
            sc.skip(result)

    def on_exit(self, tracee: Tracee, sc: Syscall) -> None:
        if "shmat" in sc.notes:
            self.shm.shmat_exit(tracee, sc)
        elif "shmdt" in sc.notes:
            self.shm.shmdt_exit(tracee, sc)

    def on_fork(self, parent: Tracee, child: Tracee) -> None:
        if child.tgid != parent.tgid:
            self.shm.forked(parent.tgid or parent.pid, child.tgid or child.pid)

    def on_exec(self, tracee: Tracee) -> None:
        self.shm.gone(tracee.tgid or tracee.pid)

    def on_process_exit(self, tracee: Tracee) -> None:
        self.sem.exited(tracee)
        self.msg.exited(tracee)
        if tracee.pid == (tracee.tgid or tracee.pid):
            self.shm.gone(tracee.pid)
