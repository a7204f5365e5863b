"""The compiled fast path (ocirun/engine/_fastpath.c), configured from the engine's tables.

It finishes, without entering the interpreter, the seccomp stops of "pure" syscalls:
one path argument, no kind handler, no exit stop, no cache invalidation, and no
extension's (the extensions loaded look only at their own syscalls), on x86_64 in
seccomp mode with the root view only. What it needs of Python's state is mirrored, each piece with its own exact invalidation:
- the root translator's result cache (pushed as Python fills it, the mirror cleared at
  its every invalidation but for the translation of "/", which does not change), and
  the followed translations of the parent directories of
  the paths Python resolved, from which a miss of another name in them is derived as
  the translator's warm shortcut does (the name binding-free and, if followed, no
  symlink);
- the guest cwd of each process whose FsState is not shared (pushed where Python
  learns it, also a parent's from a child that has it from its fork, copied to a child
  at a fork in C; forgotten at chdir/fchdir, sharing and exit), for AT_FDCWD-relative
  paths; View.to_guest of the directories dirfds name (constant: the rootfs's and
  the bindings' given at the start), for the others, and of those below them
  derived from it (_fastdirs.c: not at a binding's host path or the tracer's own
  directories); /proc/self/fd/N handed on as it is when the guest's /proc is the
  host's; a path through a directory that does not exist handed on (the kernel
  fails it with ENOENT as the translator does), never cached;
- the host directories whose listings Python fixes up (their opens go to Python) and
  whether one is open (getdents64 goes to Python then);
- unlinkat of a plain file by a plain name is let through, its host path handed back
  to Python's caches (all of them at once) before Python handles its next stop; of a
  directory (AT_REMOVEDIR) too, and again at its exit (_fastdirs.c);
- what an extension that sees only its own syscalls mirrors into it (use_fast_path):
  the fake root's records, from which it answers the stat family under -0.
A plain relative name that is not followed and names no binding goes through
untouched, as in PathArgs.translate. Everything else reaches Python as before, with
the syscall information the fast path read (no second PTRACE_GET_SYSCALL_INFO).

OCIRUN_NO_FASTPATH=1 turns it off; without a compiled module (no compiler at install
time) the pure-Python loop runs and `-v` says so once. OCIRUN_FASTPATH_STATS=1 prints
how many stops it took, =2 also why the others went to Python (by syscall).
"""

from __future__ import annotations

import os
import sys
from types import ModuleType

from ocirun.engine import fastexec
from ocirun.engine import ptrace as pt
from ocirun.engine.extension import see_paths
from ocirun.engine.path.errors import GuestPathError
from ocirun.engine.path.glue import GLUE_PREFIX
from ocirun.engine.scratch import PREFIX as SCRATCH_PREFIX
from ocirun.engine.syscalls import FLAG_FOLLOW, FLAG_NOFOLLOW, FOLLOW, NOFOLLOW, OPEN

TYPE_CHECKING = False  # typing's, without importing typing (start-up time)
if TYPE_CHECKING:
    from ocirun.engine.loop import Tracer
    from ocirun.engine.syscalls import SyscallSpec
    from ocirun.engine.tracee import Tracee

_MODES = {FOLLOW: 1, NOFOLLOW: 2, FLAG_NOFOLLOW: 3, FLAG_FOLLOW: 4, OPEN: 5}
_LISTING = 6  # getdents64: let through while no listed directory is open
_UNLINK = 7  # unlinkat of a plain file by a plain name
_PASS = 8  # an extension's syscall it needs only after every_stop_in_python() (Extension.fast_pass)
_NO_DIRFD = 0xFF


def _module() -> ModuleType | None:
    try:
        from ocirun.engine import _fastpath
    except ImportError:
        return None
    return _fastpath


def start(tracer: Tracer) -> ModuleType | None:
    """Configure the fast path for this tracer; None when it does not apply."""
    if os.environ.get("OCIRUN_NO_FASTPATH", "") not in ("", "0"):
        return None
    mod = _module()
    if mod is None:
        if tracer.verbose >= 1:
            print("ocirun: compiled fast path not built: the pure-Python engine runs", file=sys.stderr)
        return None
    if tracer.arch.name != "x86_64" or not tracer.use_seccomp or see_paths(tracer.extensions) or tracer.verbose >= 2:
        return None
    mod.set_enabled(False)  # forget what an earlier tracer in this process set
    for nr, spec in tracer.table.items():
        if _pure(tracer, nr, spec):
            _set_pure(mod, nr, spec)
        elif spec.kind == "getdents" and nr in tracer.trapped and nr not in tracer.ext_nrs and nr < 512:
            mod.set_syscall(nr, 0, _LISTING, 0, 0, False, _NO_DIRFD, False)
        elif spec.name == "unlinkat" and nr not in tracer.ext_nrs and nr < 512:
            mod.set_syscall(nr, 1, _UNLINK, 0, 0, False, 0, False)
    for nr in _passed(tracer):
        mod.set_syscall(nr, 0, _PASS, 0, 0, False, _NO_DIRFD, False)
    fastexec.start(tracer, mod)
    mod.set_on_gone(lambda hosts: _gone(tracer, hosts))
    mod.set_plain_names([_b(n) for n in tracer.path_args.bind_names])
    mod.set_listed([_b(h) for h in tracer.listed_dirs])
    _dirs(tracer, mod)
    mod.set_info_buffer(*pt.info_buffer())
    root = tracer.translator.to_host("/", "/", True)
    if tracer.translator.cached("/", True) == root:
        mod.set_root(_b(root))
    _share(tracer, mod)
    mod.set_enabled(True)
    tracer.translator.on_invalidate = mod.clear
    tracer.dirlist.fast = mod
    return mod


def _set_pure(mod: ModuleType, nr: int, spec: SyscallSpec) -> None:
    pa = spec.paths[0]
    mod.set_syscall(nr, pa.arg, _MODES[pa.follow], pa.flag_arg or 0, pa.flag_mask, pa.abs_only,
                    _NO_DIRFD if pa.dirfd is None else pa.dirfd, spec.follow_open)


def _dirs(tracer: Tracer, mod: ModuleType) -> None:
    """What lets _fastdirs.c derive a dirfd's to_guest from its parent's (not at the
    bindings' host paths, nor at the tracer's own directories: the glue tree, the
    scratch directory of socket aliases), and hand /proc/self/fd/N to the kernel as
    it is (the guest's /proc is the host's, with no binding below it)."""
    hosts, guests = tracer.translator.bound_paths()
    mod.set_dir_stops([_b(h) for h in hosts], [_b(GLUE_PREFIX), _b(SCRATCH_PREFIX)])
    for host, guest in hosts.items():  # (what the first dirfd relative to them would push)
        mod.push_dir(_b(host), _b(guest))
    try:
        host_proc = tracer.translator.to_host("/proc", "/", True) == "/proc"
    except (GuestPathError, OSError):
        host_proc = False
    mod.set_proc_fd(host_proc and not any(g[:6] == "/proc/" for g in guests))


def _share(tracer: Tracer, mod: ModuleType) -> None:
    """What the extensions mirror into the fast path (Extension.use_fast_path); their own
    syscalls they let it translate as the core's, if no other extension traps them."""
    for ext in tracer.extensions:
        names = ext.use_fast_path(mod)
        others = {n for e in tracer.extensions if e is not ext for n in e.syscalls}
        for name in names - others:
            nr = tracer.names.get(name)
            spec = tracer.table.get(nr) if nr is not None else None
            if spec is not None and _pure(tracer, nr, spec, shared=True):
                _set_pure(mod, nr, spec)


def _gone(tracer: Tracer, hosts: list[bytes] | None) -> None:
    """Files the fast path let the guest unlink: every view's cache forgets them (None:
    too many to list, forget everything), before Python translates anything again."""
    paths = None if hosts is None else [h.decode("utf-8", "surrogateescape") for h in hosts]
    for view in tracer.views:
        if paths is None:
            view.translator.invalidate_all()
        else:
            view.translator.invalidate_many(paths)


def stop(tracer: Tracer) -> None:
    """Python sees every stop from now on (a nested root view appeared, a guest process traces another)."""
    if tracer.fast is not None:
        fastexec.drain(tracer, tracer.fast)
        tracer.late_rmdirs.update((pid, h.decode("utf-8", "surrogateescape")) for pid, h in tracer.fast.take_rmdirs())
        for ext in tracer.extensions:
            ext.use_fast_path(None)
        tracer.fast.set_enabled(False)
    tracer.fast = tracer.path_args.fast = tracer.dirlist.fast = None


def late_rmdir(tracer: Tracer, pid: int, result: int) -> None:
    """The exit of an rmdir the fast path let through before it was turned off: the caches
    forget the directory again, as PathArgs.invalidate does at the exit."""
    host = tracer.late_rmdirs.pop(pid, None)
    if host is not None and result >= 0:
        for view in tracer.views:
            view.translator.invalidate(host)


def mirror_cwd(fast: ModuleType | None, t: Tracee) -> None:
    """Give the fast path a process's guest cwd as the Tracee caches it, for the
    relative paths it resolves; only an unshared FsState's (see Tracee.invalidate_cwd)."""
    fs = t.fs
    if fast is not None and fs.users == 1 and fs.cwd is not None:
        fast.set_cwd(t.pid, _b(fs.cwd), _b(fs.host_cwd or ""))
        if fs.origin is not None:
            _tell_parent(fast, t)


def _tell_parent(fast: ModuleType, t: Tracee) -> None:
    """A child's cwd read since its fork, while neither it nor its parent has changed
    directory since (a chdir's entry counts, before the kernel runs it): the parent's is
    the same, cached and mirrored, so that its next children have it from their fork (a
    shell's `cd DIR` and then `./prog`s: the shell itself makes no relative-path call)."""
    fs, parent = t.fs, t.parent
    pfs, changes = fs.origin
    fs.origin = None
    if (parent is None or parent.exited or parent.fs is not pfs or pfs.changes != changes or fs.changes
            or pfs.cwd is not None or pfs.users != 1 or not fs.host_cwd):
        return
    pfs.cwd, pfs.host_cwd = fs.cwd, fs.host_cwd
    fast.set_cwd(parent.pid, _b(pfs.cwd), _b(pfs.host_cwd))


def _b(s: str) -> bytes:
    return s.encode("utf-8", "surrogateescape")


def _pure(tracer: Tracer, nr: int, spec: SyscallSpec, shared: bool = False) -> bool:
    """A syscall whose entry is only the translation of one path argument (shared: an
    extension traps it too, and lets the fast path have it)."""
    if spec.kind or spec.exit or spec.invalidate or len(spec.paths) != 1 or (nr in tracer.ext_nrs and not shared):
        return False
    return spec.paths[0].follow in _MODES and nr < 512


def _passed(tracer: Tracer) -> list[int]:
    """Syscalls only extensions trap, each of which lets them run for now (fast_pass)."""
    names = {n for ext in tracer.extensions for n in ext.fast_pass}
    for ext in tracer.extensions:
        names -= set(ext.syscalls) - set(ext.fast_pass)
    return [nr for n in names if (nr := tracer.names.get(n)) is not None and nr not in tracer.table and nr < 512]


def report(tracer: Tracer, mod: ModuleType | None) -> None:
    """With OCIRUN_FASTPATH_STATS set: how many seccomp stops the fast path took."""
    if mod is not None and os.environ.get("OCIRUN_FASTPATH_STATS"):
        seen, fast, entries = mod.stats()
        print(f"ocirun: fast path: {fast} of {seen} seccomp stops ({entries} cached paths)", file=sys.stderr)
        fastexec.report(mod)
        if os.environ["OCIRUN_FASTPATH_STATS"] == "2":
            for nr, reason, count in sorted(mod.fallbacks(), key=lambda f: -f[2]):
                print(f"ocirun: fast path: {count} {tracer.nr_names.get(nr, nr)} to Python: {reason}", file=sys.stderr)
