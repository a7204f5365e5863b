"""The compiled fast path (ocirun/engine/_fastpath.c), configured from the engine's tables.

It finishes, without entering the interpreter, the seccomp stops of "pure" syscalls:
one path argument, no kind handler, no exit stop, no cache invalidation, and no
extension (none is loaded), on x86_64 in seccomp mode with the root view only. Their
absolute paths are looked up in a mirror of the root translator's result cache (this
module pushes what that cache holds and clears the mirror at its every invalidation);
a plain relative name that is not followed and names no binding goes through
untouched, as in PathArgs.translate. Everything else reaches Python as before.

OCIRUN_NO_FASTPATH=1 turns it off; without a compiled module (no compiler at install
time) the pure-Python loop runs and `-v` says so once.
"""

from __future__ import annotations

import os
import sys
from types import ModuleType
from typing import TYPE_CHECKING

from ocirun.engine.syscalls import FLAG_FOLLOW, FLAG_NOFOLLOW, FOLLOW, NOFOLLOW, OPEN

if TYPE_CHECKING:
    from ocirun.engine.loop import Tracer
    from ocirun.engine.syscalls import SyscallSpec

_MODES = {FOLLOW: 1, NOFOLLOW: 2, FLAG_NOFOLLOW: 3, FLAG_FOLLOW: 4, OPEN: 5}


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
    if tracer.arch.name != "x86_64" or not tracer.use_seccomp or tracer.extensions or tracer.verbose >= 2:
        return None
    mod.set_enabled(False)  # forget what an earlier tracer in this process set
    for nr, spec in tracer.table.items():
        if _pure(tracer, nr, spec):
            pa = spec.paths[0]
            mod.set_syscall(nr, pa.arg, _MODES[pa.follow], pa.flag_arg or 0, pa.flag_mask, pa.abs_only)
    mod.set_plain_names([n.encode("utf-8", "surrogateescape") for n in tracer.path_args.bind_names])
    mod.set_enabled(True)
    tracer.translator.on_invalidate = mod.clear
    return mod


def _pure(tracer: Tracer, nr: int, spec: SyscallSpec) -> bool:
    """A syscall whose entry is only the translation of one path argument."""
    if spec.kind or spec.exit or spec.invalidate or len(spec.paths) != 1 or nr in tracer.ext_nrs:
        return False
    if spec.follow_open and tracer.listed_dirs:
        return False  # opening a listed directory is noted
    return spec.paths[0].follow in _MODES and nr < 512


def report(tracer: Tracer, mod: ModuleType | None) -> None:
    """With OCIRUN_FASTPATH_STATS set: how many seccomp stops the fast path took."""
    if mod is not None and os.environ.get("OCIRUN_FASTPATH_STATS"):
        seen, fast, entries = mod.stats()
        print(f"ocirun: fast path: {fast} of {seen} seccomp stops ({entries} cached paths)", file=sys.stderr)
