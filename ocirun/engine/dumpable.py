"""PR_SET_DUMPABLE is remembered, not run: a non-dumpable process refuses
process_vm_readv to an unprivileged tracer, so the guest stays readable (sudo,
ssh-agent) and PR_GET_DUMPABLE answers from what was remembered. As in the
kernel, the value is copied on fork and reset by exec."""

from __future__ import annotations

import errno

TYPE_CHECKING = False  # typing's, without importing typing (start-up time)
if TYPE_CHECKING:
    from ocirun.engine.syscall import Syscall
    from ocirun.engine.tracee import Tracee

PR_GET_DUMPABLE, PR_SET_DUMPABLE = 3, 4


class Dumpable:
    def __init__(self) -> None:
        self.values: dict[int, int] = {}  # tgid -> the value asked for, when not 1

    def enter_prctl(self, t: Tracee, sc: Syscall) -> bool:
        """Handle PR_SET/GET_DUMPABLE; False for any other prctl."""
        option = sc.arg_int(0)
        if option == PR_SET_DUMPABLE:
            if sc.args[1] > 1:
                sc.skip(-errno.EINVAL)
                return True
            if sc.args[1] == 1:
                self.values.pop(t.tgid, None)
            else:
                self.values[t.tgid] = 0
            sc.skip(0)
        elif option == PR_GET_DUMPABLE:
            sc.skip(self.values.get(t.tgid, 1))
        else:
            return False
        return True

    def on_fork(self, parent_tgid: int, child_pid: int) -> None:
        if parent_tgid in self.values:  # the kernel copies the mm's flags
            self.values[child_pid] = self.values[parent_tgid]

    def on_exec(self, tgid: int) -> None:
        self.values.pop(tgid, None)  # exec of a non-setuid program: dumpable again

    on_exit = on_exec
