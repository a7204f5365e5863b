"""ocirun's one logger: `log.warning(...)` prints `ocirun: warning: ...` on stderr.

Every layer (the engine too) warns through `log`, so all warnings look alike and a
caller may silence or capture them with the standard logging machinery. The handler
writes to whatever sys.stderr is when a record is emitted (tests swap it).
"""

from __future__ import annotations

import logging
import sys


class _Stderr(logging.StreamHandler):
    """A StreamHandler on the current sys.stderr, not the one at import time."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


class _Format(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"ocirun: {record.levelname.lower()}: {record.getMessage()}"


log = logging.getLogger("ocirun")
if not log.handlers:
    _handler = _Stderr()
    _handler.setFormatter(_Format())
    log.addHandler(_handler)
    log.setLevel(logging.WARNING)
    log.propagate = False
