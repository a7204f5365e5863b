"""The loader step of an exec, hidden from a guest tracer's syscall stops.

The engine runs a dynamic program as `ld.so [--argv0 NAME] PROGRAM ARGS` (ocirun/engine/
execve.py): before the program's own first steps, the loader opens PROGRAM, reads and
maps it and closes it, calls Linux makes in the kernel during execve. Under a guest
strace they would show as extra lines; PRoot hides its loader's the same way.
"""

from __future__ import annotations

from ocirun.engine import ptrace as pt
from ocirun.engine.extension import STOP_ENTRY
from ocirun.engine.extensions.ptrace.state import LoaderSteps

TYPE_CHECKING = False  # typing's, without importing typing (start-up time)
if TYPE_CHECKING:
    from ocirun.engine.extension import Engine, Stop
    from ocirun.engine.extensions.ptrace.state import Ptracee
    from ocirun.engine.tracee import Tracee

LOOKAHEAD = 16  # syscalls after the exec within which the loader opens the program


class LoaderFilter:
    def __init__(self, engine: Engine):
        names = engine.names
        self.opens = {names[n]: (1 if n == "openat" else 0) for n in ("open", "openat") if n in names}
        self.close = names["close"]

    def after_exec(self, t: Tracee) -> LoaderSteps | None:
        """The loader step to hide after this exec (None: the kernel loaded the program)."""
        words = t.loader_words
        if words is None or t.abi.arch.word != 8:
            return None
        try:
            with open(f"/proc/{t.pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            return None
        index = words[0] - 1 if words[1] else words[0]  # ld.so [--argv0 NAME] PROGRAM
        if index >= len(argv):
            return None
        return LoaderSteps(argv[index].decode("utf-8", "surrogateescape"))

    def hides(self, p: Ptracee, stop: Stop) -> bool:
        """Whether this syscall stop belongs to the loader's reading of the program."""
        steps = p.loader
        if steps is None:
            return False
        try:
            info = pt.syscall_info(p.tid)
        except OSError:
            return False
        if stop.kind == STOP_ENTRY:
            return self._entry(p, steps, info.nr, list(info.args))
        if not steps.hiding:
            return False
        result = info.nr - (1 << 64) if info.nr >> 63 else info.nr  # the exit's rval
        if steps.fd is None:
            steps.fd = result
            if result < 0:
                p.loader = None
        elif steps.closing:
            p.loader = None
        return True

    def _entry(self, p: Ptracee, steps: LoaderSteps, nr: int, args: list[int]) -> bool:
        if steps.hiding:
            if nr == self.close and steps.fd is not None and args[0] == steps.fd:
                steps.closing = True
            return True
        steps.seen += 1
        arg = self.opens.get(nr)
        if arg is not None:
            try:
                path = pt.read_cstring(p.tid, args[arg]).decode("utf-8", "surrogateescape")
            except OSError:
                path = ""
            if path == steps.program:
                steps.hiding = True
                return True
        if steps.seen > LOOKAHEAD:
            p.loader = None
        return False
