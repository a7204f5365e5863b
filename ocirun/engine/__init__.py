"""The ptrace engine: run an EnginePlan (a guest command in a directory tree with
bindings) as a traced process tree and return its exit status.

The engine knows nothing of images. Modules, in PRoot's split by concern:
ptrace (raw ctypes calls), arch/ (registers and ABI per architecture), seccomp
(the BPF filter), syscalls/ (the syscall table as data), tracee / syscall
(per-process and per-syscall state, the API extensions use), loop (the event
loop and the enter/exit dispatch), spawn (the first process, signals), path/
(guest path resolution; path/args.py: syscall path arguments, path/proc.py:
/proc), execve / execve_enter (shebang, ELF loader, QEMU hook), cwd, socket
(AF_UNIX addresses), dirlist (getdents64 fix-ups), dumpable, nest (nested
runs), extensions/ (the optional behaviours). ARCHITECTURE.md has the map.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing's, without importing typing (start-up time)
if TYPE_CHECKING:
    from ocirun.engine.plan import EnginePlan


def run(plan: EnginePlan) -> int:
    """Run `plan` to completion; the exit status of its first process as a shell
    reports it (128+N for a death by signal N). Raises OcirunError for failures
    of ocirun itself (missing rootfs, command not found: 127, not executable: 126,
    ptrace not permitted)."""
    from ocirun.engine.loop import Tracer

    return Tracer(plan).run()
