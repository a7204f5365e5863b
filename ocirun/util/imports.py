"""Imports by name (extensions, architectures, syscall tables, lazily loaded commands).

Not `importlib.import_module`: the importlib package imports `warnings` (~1.5 ms at
every start of `ocirun proot` and `ocirun run`), and `__import__` does the same job for
an absolute name.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # typing's, without importing typing (start-up time)
if TYPE_CHECKING:
    from types import ModuleType


def import_module(name: str) -> ModuleType:
    """The module of this absolute dotted name, imported if it was not."""
    __import__(name)
    return sys.modules[name]
