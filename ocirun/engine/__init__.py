"""The ptrace engine: run an EnginePlan (a guest command in a directory tree with
bindings) as a traced process tree and return its exit status.

The engine knows nothing of images. Modules, in PRoot's split by concern:
ptrace (raw ctypes calls), seccomp (the BPF filter), syscalls/ (the syscall
table as data), tracee / syscall (per-process and per-syscall state, the API
extensions use), loop (the tracer), execve (shebang, ELF loader, QEMU hook),
path/ (guest path resolution, by the path engineer).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ocirun.engine.plan import EnginePlan


def run(plan: EnginePlan) -> int:
    """Run `plan` to completion; the exit status of its first process as a shell
    reports it (128+N for a death by signal N). Raises OcirunError for failures
    of ocirun itself (missing rootfs, command not found: 127, not executable: 126,
    ptrace not permitted)."""
    from ocirun.engine.loop import Tracer

    return Tracer(plan).run()
