"""The glue between the engine's execve planner (ocirun/engine/execve.py) and QemuSetup.

When QEMU is on, the planner calls `foreign(plan, elf)` for an ELF of another machine
and `host_program(plan, elf)` for an ELF of the host's machine (mixed mode), whose
loader and libraries must then come from the host. Both may replace plan.host_path,
plan.argv and (QEMU only) set plan.new_env, which the tracer writes as the new envp.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from typing import Any

from ocirun.engine.path.errors import GuestPathError
from ocirun.engine.plan import EnginePlan
from ocirun.engine.qemu.arch import read_elf_id
from ocirun.engine.qemu.wrap import QemuSetup, add_host_rootfs

Hook = Callable[[Any, Any], Any]


def _apply(setup: QemuSetup, plan: Any, want_foreign: bool) -> Any:
    ident = read_elf_id(plan.program_host)
    rw = setup.rewrite(plan.guest_path, list(plan.argv), getattr(plan, "env", None), ident, plan.program_host)
    if rw is None:
        if want_foreign:
            raise GuestPathError(errno.ENOEXEC)  # a CPU no QEMU here runs, as the kernel says
        return plan
    plan.host_path = rw.host_file
    plan.argv = rw.argv
    if rw.env is not None:
        plan.new_env = rw.env
    return plan


def hooks_for(plan: EnginePlan) -> tuple[Hook | None, Hook | None]:
    """(foreign, host_program) hooks for an ExecPlanner; (None, None) when QEMU is off.

    Also adds the /host-rootfs binding to `plan` (before the translator is built).
    Raises OcirunError(125) if the plan's QEMU command does not exist.
    """
    setup = QemuSetup.from_plan(plan)
    if setup is None:
        return None, None
    add_host_rootfs(plan)
    return (lambda p, elf: _apply(setup, p, True)), (lambda p, elf: _apply(setup, p, False))
