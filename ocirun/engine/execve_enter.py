"""The execve/execveat entry: the guest's program path, argv (and, under QEMU, its
environment) replaced by the ExecPlan's (ocirun/engine/execve.py), written to
scratch memory on the tracee's stack."""

from __future__ import annotations

import errno
import os
import struct
import sys

from ocirun.engine import fastexec, fastpath
from ocirun.engine import ptrace as pt
from ocirun.util.linux import AT_EMPTY_PATH, AT_FDCWD

TYPE_CHECKING = False  # typing's, without importing typing (start-up time)
if TYPE_CHECKING:
    from ocirun.engine.loop import Tracer
    from ocirun.engine.syscall import Syscall
    from ocirun.engine.tracee import Tracee

ENC = "surrogateescape"
MAX_VECTOR = 1 << 16


def read_vector(t: Tracee, ptr: int, ptrs: list[int] | None = None) -> list[str]:
    """The strings of a NULL-terminated char* array (their addresses into `ptrs`);
    pointers are the caller's ABI's (4 bytes for i386)."""
    out: list[str] = []
    if not ptr:
        return out
    word = t.abi.arch.word
    fmt = "<I" if word == 4 else "<Q"
    while len(out) < MAX_VECTOR:
        chunk = t.read(ptr, word * 64)
        if len(chunk) < word:
            break
        done = False
        for (p,) in struct.iter_unpack(fmt, chunk[: len(chunk) // word * word]):
            if p == 0:
                done = True
                break
            out.append(t.read_string(p, 1 << 17))
            if ptrs is not None:
                ptrs.append(p)
        if done:
            break
        ptr += len(chunk) // word * word
    return out


def push_vector(sc: Syscall, new: list[str], old: list[str], old_ptrs: list[int]) -> int:
    """A char* array for `new` on the scratch stack; strings the guest already
    has in memory are pointed to, not copied (xargs-sized argvs fit)."""
    have = dict(zip(old, old_ptrs, strict=False))
    addrs = [have.get(a) or sc.push_string(a) for a in new]
    return sc.push(struct.pack(f"<{len(addrs) + 1}{'I' if sc.arch.word == 4 else 'Q'}", *addrs, 0))


def _guest_program(tracer: Tracer, t: Tracee, sc: Syscall, at: bool) -> str | None:
    """The guest path being executed (None: leave the call to the kernel; skipped on error)."""
    pidx = 1 if at else 0
    raw = pt.read_cstring(t.pid, sc.args[pidx]) if sc.args[pidx] else b""
    if at and not raw and sc.args[4] & AT_EMPTY_PATH:
        fd = sc.arg_int(0)
        host = t.fd_host_path(fd)  # fexecve
        if host is None:
            return None
        # a memfd or a deleted file has no name: the fd's magic link reopens it
        guest = f"/proc/self/fd/{fd}" if host.endswith(" (deleted)") else t.fd_guest_path(fd)
        if guest is None:
            return None
    elif not raw:
        sc.skip(-errno.ENOENT if sc.args[pidx] else -errno.EFAULT)
        return None
    else:
        guest = raw.decode("utf-8", ENC)
    if guest[0] != "/" and at and sc.arg_int(0) != AT_FDCWD:
        base = tracer.path_args.base_dir(t, sc, sc.spec.paths[0]) or "/"
        guest = (base.rstrip("/") or "") + "/" + guest
    return tracer.proc.exe_of(t, guest) or guest


def _path_inaccessible(t: Tracee, sc: Syscall) -> bool:
    """execveat through a close-on-exec fd by a relative or empty name: the kernel's
    BINPRM_FLAGS_PATH_INACCESSIBLE, which makes a script (not an ELF) fail ENOENT."""
    fd = sc.arg_int(0)
    raw = pt.read_cstring(t.pid, sc.args[1]) if sc.args[1] else b""
    if fd == AT_FDCWD or raw[:1] == b"/":
        return False
    try:
        with open(f"/proc/{t.pid}/fdinfo/{fd}") as f:
            flags = next((int(line.split()[1], 8) for line in f if line.startswith("flags:")), 0)
    except (OSError, ValueError):
        return False
    return bool(flags & os.O_CLOEXEC)


def enter_execve(tracer: Tracer, t: Tracee, sc: Syscall) -> None:
    at = sc.spec.kind == "execveat"
    pidx = 1 if at else 0
    argv_ptr = sc.args[pidx + 1]
    envp_ptr = sc.args[pidx + 2]
    if tracer.fast is not None:
        tracer.fast.exec_forget(t.pid)  # this execve is Python's (fastexec.taken)
    guest = _guest_program(tracer, t, sc, at)
    if guest is None:
        return
    cwd = t.guest_cwd()
    argv_ptrs: list[int] = []
    argv = read_vector(t, argv_ptr, argv_ptrs)
    planner = t.view.planner
    env_ptrs: list[int] = []
    env = read_vector(t, envp_ptr, env_ptrs) if planner.foreign is not None else None  # QEMU: LD_* -> -E
    plan = planner.plan(guest, argv or [guest], cwd, env, (t.tgid, t.pid))
    if at and plan.chain and _path_inaccessible(t, sc):
        sc.skip(-errno.ENOENT)  # the interpreter could not open the script once the fd is closed
        return
    host_file = plan.host_path
    if plan.loader_words is not None:  # the loader runs it: named like the program (comm, ps)
        # the kernel's comm: the name executed, before symlinks (sh, not dash)
        name = (plan.guest_path if guest[:6] == "/proc/" else guest).rstrip("/").rpartition("/")[2]
        if name and "/" not in name:
            host_file = tracer.scratch.named_link(plan.host_path, name)
    try:
        path_addr = sc.push_string(host_file)
        argv_addr = push_vector(sc, plan.argv, argv, argv_ptrs) if plan.argv != argv else argv_ptr
        if plan.new_env is not None:  # QEMU: the guest's LD_* moved to QEMU's -E
            envp_ptr = push_vector(sc, plan.new_env, env or [], env_ptrs)
    except OSError as exc:
        if exc.errno != errno.EFAULT:
            raise
        # the new argv does not fit below the stack pointer: the kernel's answer
        # to an argv too large (xargs then retries with fewer arguments)
        sc.skip(-errno.E2BIG)
        return
    if at:  # becomes a plain execve of the planned host file
        sc.arch.regs.set_nr(t.pid, t.abi.names["execve"])
    sc.set_arg(0, path_addr)
    sc.set_arg(1, argv_addr)
    sc.set_arg(2, envp_ptr)
    t.pending_exe = plan.guest_path
    t.pending_loader = plan.loader_words
    if not at and tracer.fast is not None and guest[:6] != "/proc/":
        fastexec.note(tracer, t, guest, plan, host_file)
        if guest[0] != "/":  # a relative name starts from the cwd
            fastpath.mirror_cwd(tracer.fast, t)
    if tracer.verbose >= 1:
        print(f"ocirun: [{t.pid}] execve {guest} -> {plan.host_path} {plan.argv}", file=sys.stderr)
