"""ocirun's one logger: `log.warning(...)` prints `ocirun: warning: ...` on stderr.

Every layer (the engine too) warns through `log`, so all warnings look alike and a
caller may silence or capture them with the standard logging machinery. The handler
writes to whatever sys.stderr is when a record is emitted (tests swap it).

`log` stands for the logging.Logger "ocirun", made (and the logging package imported)
on its first use: most runs warn about nothing, and importing logging is a few ms of
`ocirun proot`'s start-up.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # typing's, without importing typing (start-up time)
if TYPE_CHECKING:
    import logging


def _make() -> logging.Logger:
    import logging

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

    logger = logging.getLogger("ocirun")
    if not logger.handlers:
        handler = _Stderr()
        handler.setFormatter(_Format())
        logger.addHandler(handler)
        logger.setLevel(logging.WARNING)
        logger.propagate = False
    return logger


class _LazyLogger:
    """The "ocirun" Logger, made when an attribute of it is first asked for."""

    _logger: logging.Logger | None = None

    def __getattr__(self, name: str):
        logger = _LazyLogger._logger
        if logger is None:
            logger = _LazyLogger._logger = _make()
        return getattr(logger, name)


log: logging.Logger = _LazyLogger()  # type: ignore[assignment]
