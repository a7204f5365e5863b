"""Nested runs: `ocirun proot` inside an ocirun guest.

ptrace cannot nest (the inner tracer's children are the outer tracer's tracees
already), so the inner ocirun asks the outer one, through prctl(NEST_MAGIC, data,
len), to show its process its rootfs and bindings, then execs the guest command
itself. The outer tracer gives that process tree a View composed of both. On a
plain kernel the prctl fails with EINVAL and the inner ocirun traces by itself.
"""

from __future__ import annotations

import ctypes
import errno
import os
import sys
from typing import TYPE_CHECKING

from ocirun.engine import ptrace as pt
from ocirun.engine.execve import ExecPlanner
from ocirun.engine.path.errors import GuestPathError
from ocirun.engine.path.translator import PathTranslator
from ocirun.engine.plan import Binding, EnginePlan
from ocirun.engine.spawn import child_reset_signals, resolve_command
from ocirun.engine.view import View
from ocirun.errors import OcirunError

if TYPE_CHECKING:
    from ocirun.engine.loop import Tracer
    from ocirun.engine.syscall import Syscall
    from ocirun.engine.tracee import Tracee

ENC = "surrogateescape"
NEST_MAGIC = 0x4F435255  # prctl option of a nested ocirun ("OCRU"; unknown to the kernel: EINVAL)


def try_nest(plan: EnginePlan) -> bool:
    """Inside an ocirun guest, ask the outer tracer to show this process our
    rootfs and bindings; False on a plain kernel (EINVAL) or outside ocirun."""
    fields = [os.path.abspath(plan.rootfs)]
    for b in plan.bindings:
        fields += [b.host, b.guest, "1" if b.deref_guest else "0"]
    data = "\0".join(fields).encode("utf-8", ENC)  # rootfs, then (host, guest, deref) triples
    buf = ctypes.create_string_buffer(data, len(data))
    return pt.libc.prctl(NEST_MAGIC, ctypes.addressof(buf), len(data), 0, 0) == 0


def exec_nested(plan: EnginePlan) -> None:
    """Become the guest command: the outer ocirun translates it in our view."""
    if plan.extensions:
        names = ", ".join(e.name for e in plan.extensions)
        print(f"ocirun: warning: nested in another ocirun: extensions ({names}) are not applied",
              file=sys.stderr)
    env = dict(os.environ if plan.env is None else plan.env)
    argv = list(plan.argv) or ["/bin/sh"]
    try:
        os.chdir(plan.cwd or "/")
    except OSError as exc:
        raise OcirunError(f"working directory '{plan.cwd}' does not exist in the guest: {exc.strerror}") from None
    prog = resolve_command(lambda p, cwd, follow: p, argv[0], env, plan.cwd or "/")
    sys.stdout.flush()
    sys.stderr.flush()
    child_reset_signals(pdeathsig=False)
    try:
        os.execve(prog, argv, env)
    except OSError as exc:
        code = 127 if exc.errno in (errno.ENOENT, errno.ENOTDIR) else 126
        raise OcirunError(f"{argv[0]}: {exc.strerror}", code) from None


def _inner_bindings(t: Tracee, fields: list[str]) -> tuple[str, list[Binding]]:
    """(host rootfs, bindings) of a nesting request, resolved in the tracee's view."""
    if len(fields) % 3 != 1:
        raise ValueError("bad nesting request")
    outer = t.view
    cwd = t.guest_cwd()
    rootfs = outer.translator.canonical(fields[0], cwd, True, t.tgid, t.pid)
    rootfs_host = outer.translator.to_host(rootfs, "/", True, t.tgid, t.pid)
    bindings: list[Binding] = []
    for b in outer.bindings:  # the outer bindings the inner rootfs contains
        if rootfs == "/" or b.guest == rootfs or b.guest.startswith(rootfs + "/"):
            inner_guest = b.guest[len(rootfs):] if rootfs != "/" else b.guest
            bindings.append(Binding(b.host, inner_guest or "/", b.deref_guest, b.readonly))
    for k in range(1, len(fields), 3):
        host, guest, deref = fields[k], fields[k + 1], fields[k + 2] == "1"
        try:
            real = outer.translator.to_host(host, cwd, True, t.tgid, t.pid)
        except GuestPathError:
            continue  # missing host path: skipped, as PRoot does
        bindings.append(Binding(real, guest, bool(deref)))
    return rootfs_host, bindings


def enter_nest(tracer: Tracer, t: Tracee, sc: Syscall) -> None:
    """prctl(NEST_MAGIC, data, len) from an `ocirun proot` running in the guest:
    from now on its process sees its own rootfs and bindings, composed with
    this tracer's view."""
    if sc.args[0] & 0xFFFFFFFF != NEST_MAGIC or not sc.args[1] or not 0 < sc.args[2] < 1 << 20:
        return
    try:
        fields = t.read(sc.args[1], sc.args[2]).decode("utf-8", ENC).split("\0")
        rootfs_host, bindings = _inner_bindings(t, fields)
    except (ValueError, KeyError, TypeError, OSError) as exc:
        sc.skip(-(getattr(exc, "errno", None) or errno.EINVAL))
        return
    view = View(tracer, PathTranslator(rootfs_host, bindings), None, bindings)
    foreign, host_program = tracer.qemu_hooks
    view.planner = ExecPlanner(view.to_host, view.to_guest, tracer.arch.name,
                               foreign=foreign, host_program=host_program)
    tracer.views.append(view)
    t.view = view
    t.invalidate_cwd()
    sc.skip(0)
