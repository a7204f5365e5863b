"""When the tracer's own code fails at a stop: the guest must not go down with it.

The failed syscall gets EIO (or the host's ENOSPC/EDQUOT when the disk filled up
while the engine did work on the guest's behalf: a copy-up, a fake-root record,
which the guest would have met for a write of its own) and the loop goes on.
"""

from __future__ import annotations

import errno

from ocirun.util.log import log

TYPE_CHECKING = False  # typing's, without importing typing (start-up time)
if TYPE_CHECKING:
    from ocirun.engine.tracee import Tracee


class InternalErrors:
    """Reports the first internal error (every one at -v 1) and fails its syscall."""

    def __init__(self, verbose: int) -> None:
        self.verbose = verbose
        self.reported = False

    def handle(self, t: Tracee, exc: BaseException) -> None:
        sc = t.sc
        name = sc.name if sc is not None else "?"
        code = host_full_errno(exc)
        if not code and (not self.reported or self.verbose >= 1):
            self.reported = True
            log.error(f"internal error at {name} of pid {t.pid}: {type(exc).__name__}: {exc}")
        if sc is not None and not sc.at_exit and not sc.skipped:
            try:
                sc.skip(-(code or errno.EIO))
            except OSError:
                pass
        t.sc = None


def host_full_errno(exc: BaseException) -> int:
    """ENOSPC/EDQUOT if `exc` says the host's disk is full (sqlite's SQLITE_FULL too), else 0."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return exc.errno
    if getattr(exc, "sqlite_errorname", "") == "SQLITE_FULL":
        return errno.ENOSPC
    return 0
