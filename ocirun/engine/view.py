"""What a tracee sees: a path translator and an execve planner."""

from __future__ import annotations

TYPE_CHECKING = False  # typing's, without importing typing (start-up time)
if TYPE_CHECKING:
    from ocirun.engine.execve import ExecPlanner
    from ocirun.engine.loop import Tracer
    from ocirun.engine.path.translator import PathTranslator
    from ocirun.engine.plan import Binding


class View:
    """Every tracee starts in the plan's view; a nested `ocirun proot` inside the
    guest hands its own rootfs and bindings to this tracer (ocirun/engine/nest.py)
    and its process tree then gets a view composed of both."""

    __slots__ = ("engine", "translator", "planner", "bindings", "extensions")

    def __init__(self, engine: Tracer, translator: PathTranslator, planner: ExecPlanner | None,
                 bindings: list[Binding], extensions: list | None = None):
        self.engine = engine
        self.translator = translator
        self.planner = planner
        self.bindings = bindings  # host paths are real host paths
        # the extensions its tracees get: the plan's, or a nested run's composed with them
        self.extensions = engine.extensions if extensions is None else extensions

    def to_host(self, guest: str, cwd: str = "/", follow_last: bool = True, pid: int | None = None,
                tid: int | None = None) -> str:
        return self.translator.to_host(guest, cwd, follow_last, pid, tid)

    def to_guest(self, host: str) -> str | None:
        sockets = self.engine.sockets
        if sockets.aliases and host.startswith(sockets.scratch.path or "\0"):
            host = sockets.unalias(host)
        return self.translator.to_guest(host)
