"""Pure path logic of the engine: guest<->host translation, bindings, resolution cache.

No ptrace in here: the tracer calls these at each path syscall.
"""

from ocirun.engine.path.bindings import (
    R_BINDINGS,
    S_BINDINGS,
    BindingMap,
    parse_bind_spec,
    recommended_bindings,
)
from ocirun.engine.path.errors import GuestPathError
from ocirun.engine.path.fsview import DIR, FILE, LINK, MISSING, FsView, HostFs
from ocirun.engine.path.translator import PathTranslator, Resolved

__all__ = [
    "BindingMap",
    "DIR",
    "FILE",
    "FsView",
    "GuestPathError",
    "HostFs",
    "LINK",
    "MISSING",
    "PathTranslator",
    "R_BINDINGS",
    "Resolved",
    "S_BINDINGS",
    "parse_bind_spec",
    "recommended_bindings",
]
