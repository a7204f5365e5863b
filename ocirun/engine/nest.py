"""Nested runs: `ocirun proot` inside an ocirun guest.

ptrace cannot nest (the inner tracer's children are the outer tracer's tracees
already), so the inner ocirun asks the outer one, through prctl(NEST_MAGIC, data,
len), to show its process its rootfs and bindings and to apply its -0/-i/-k, then
execs the guest command itself. The outer tracer gives that process tree a View
composed of both (the inner extensions replace outer ones of the same kind). On a
plain kernel the prctl fails with EINVAL and the inner ocirun traces by itself.

The request: rootfs, the extension options ("ids=U:G", "kernel=SPEC",
"ports=G:H,...", "netcoop=1", "l2s=1", joined by \x01), then (host, guest, deref)
triples. The answer is 1 when the outer tracer uses a seccomp filter: the inner
process then adds one that stops the syscalls its extensions need (filters stack;
the outer's alone would let them run).
"""

from __future__ import annotations

import ctypes
import errno
import os
import sys

from ocirun.engine import ptrace as pt
from ocirun.engine.execve import ExecPlanner
from ocirun.engine.extension import Extension, ExtensionHost
from ocirun.engine.path.errors import GuestPathError
from ocirun.engine.path.translator import PathTranslator
from ocirun.engine.plan import Binding, EnginePlan
from ocirun.engine.spawn import child_reset_signals, resolve_command
from ocirun.engine.view import View
from ocirun.errors import OcirunError
from ocirun.util.log import log

TYPE_CHECKING = False  # typing's, without importing typing (start-up time)
if TYPE_CHECKING:
    from typing import Any

    from ocirun.engine.loop import Tracer
    from ocirun.engine.syscall import Syscall
    from ocirun.engine.tracee import Tracee

ENC = "surrogateescape"
NEST_MAGIC = 0x4F435255  # prctl option of a nested ocirun ("OCRU"; unknown to the kernel: EINVAL)


def _extension_options(plan: EnginePlan) -> tuple[list[str], list[str]]:
    """(options the outer tracer can apply, names of the extensions it cannot)."""
    options, others = [], []
    for ext in plan.extensions:
        if ext.name == "fake_id0":
            options.append(f"ids={ext.uid}:{ext.gid}")
        elif ext.name == "kompat":
            options.append(f"kernel={ext.spec}")
        elif ext.name == "portmap":
            ports = ",".join(f"{g}:{h}" for g, h in sorted(ext.map.static.items()))
            options.append(f"ports={ports}")
            if ext.netcoop:
                options.append("netcoop=1")
        elif ext.name == "link2symlink":
            options.append("l2s=1")
        else:
            others.append(ext.name)
    return options, others


def _parse_ports(spec: str) -> dict[int, int]:
    """'G:H,G:H' of a nesting request back into -p's guest -> host map."""
    pairs = (item.split(":") for item in spec.split(",") if item)
    return {int(g): int(h) for g, h in pairs}


def try_nest(plan: EnginePlan) -> int | None:
    """Inside an ocirun guest, ask the outer tracer to show this process our rootfs,
    bindings and extensions: None on a plain kernel (EINVAL) or outside ocirun, else
    1 if the outer tracer uses seccomp, 0 if not."""
    options, _ = _extension_options(plan)
    fields = [os.path.abspath(plan.rootfs), "\x01".join(options)]
    for b in plan.bindings:
        fields += [b.host, b.guest, "1" if b.deref_guest else "0"]
    data = "\0".join(fields).encode("utf-8", ENC)
    buf = ctypes.create_string_buffer(data, len(data))
    rc = pt.libc.prctl(NEST_MAGIC, ctypes.addressof(buf), len(data), 0, 0)
    return rc if rc in (0, 1) else None


def _trap_extension_syscalls(plan: EnginePlan, arch: Any) -> None:
    """Under an outer seccomp filter: stop at the syscalls our extensions need too."""
    from ocirun.engine import seccomp, syscalls
    from ocirun.engine.arch import native_arches

    sections = []
    for each in native_arches(arch):
        names = syscalls.names(each.name)
        nrs = {names[n] for ext in plan.extensions for n in ext.syscalls if n in names}
        if nrs:
            sections.append(seccomp.ArchRules(each, nrs))
    if not sections:
        return
    err = seccomp.install(seccomp.prepare(seccomp.build_filter(sections)))
    if err:
        raise OcirunError(f"cannot install the nested seccomp filter: {os.strerror(err)}")


def exec_nested(plan: EnginePlan, outer_seccomp: int, arch: Any) -> None:
    """Become the guest command: the outer ocirun translates it in our view."""
    _, others = _extension_options(plan)
    if others:
        log.warning(f"nested in another ocirun: extensions ({', '.join(others)}) are not applied")
    if outer_seccomp:
        _trap_extension_syscalls(plan, arch)
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
    """(host rootfs, bindings) of a nesting request (without its options field),
    resolved in the tracee's view."""
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
        options = fields.pop(1).split("\x01") if len(fields) % 3 == 2 else []
        rootfs_host, bindings = _inner_bindings(t, fields)
        extensions = _inner_extensions(tracer, t, rootfs_host, [o for o in options if o])
    except (ValueError, KeyError, TypeError, OSError) as exc:
        sc.skip(-(getattr(exc, "errno", None) or errno.EINVAL))
        return
    view = View(tracer, PathTranslator(rootfs_host, bindings), None, bindings, extensions)
    foreign, host_program = tracer.qemu_hooks
    view.planner = ExecPlanner(view.to_host, view.to_guest, tracer.arch.name,
                               foreign=foreign, host_program=host_program)
    tracer.views.append(view)
    t.view = view
    t.invalidate_cwd()
    sc.skip(1 if tracer.use_seccomp else 0)


# the order extensions run in (ocirun/engine/extensions/__init__.py)
_ORDER = ("copy-up", "link2symlink", "kompat", "fake_id0", "portmap")


class _NestedEngine(ExtensionHost):
    """What a nested run's extensions see of the tracer: its rootfs, and each other
    for the broadcasts."""

    def __init__(self, tracer: Tracer, rootfs_host: str, extensions: list[Extension]):
        self.plan = EnginePlan(argv=[], rootfs=rootfs_host, extensions=extensions)
        self.arch = tracer.arch
        self.verbose = tracer.verbose
        self.names = tracer.names
        self.views = tracer.views
        self.extensions = extensions


def _inner_extensions(tracer: Tracer, t: Tracee, rootfs_host: str, options: list[str]) -> list:
    """The outer view's extensions with the nested run's -0/-i/-k in place of their kind."""
    from ocirun.engine.extensions import build, parse_ids

    values = dict(o.split("=", 1) for o in options)
    if not values:
        return t.view.extensions
    ids = parse_ids(values["ids"]) if "ids" in values else None
    inner = build(rootfs=rootfs_host, ids=ids, kernel_release=values.get("kernel"),
                  ports=_parse_ports(values.get("ports", "")), netcoop="netcoop" in values,
                  link2symlink="l2s" in values,
                  sysvipc=False)  # the outer run's IPC namespace serves nested guests too
    _NestedEngine(tracer, rootfs_host, inner).attach_extensions(None)
    tracer.nested_extensions.extend(inner)
    names = {e.name for e in inner}
    if ids is not None:  # the nested run starts as the ids it asked for
        from ocirun.engine.extensions.fake_id0.creds import Creds

        t.data["fake_id0.creds"] = Creds.initial(*ids)
    if not tracer.use_seccomp:  # every syscall stops: make the loop look at theirs
        for abi in tracer.abis.values():
            abi.trapped |= {abi.names[n] for e in inner for n in e.syscalls if n in abi.names}
    kept = [e for e in t.view.extensions if e.name not in names]
    return sorted(kept + inner, key=lambda e: _ORDER.index(e.name) if e.name in _ORDER else len(_ORDER))
