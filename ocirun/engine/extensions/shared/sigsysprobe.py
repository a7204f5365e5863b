"""A probe's call that a host seccomp policy may answer with SIGSYS (Android's app
filter): the signal is caught for the call's length instead of killing the tracer."""

from __future__ import annotations

import _signal  # the C module: `signal` builds its enums at import (~2 ms a start)


class catching_sigsys:  # (named as the function it replaced: `with catching_sigsys() as trapped`)
    """Within the block a SIGSYS is only noted: the list it yields is not empty after
    the block if one came (the trapped call returned whatever the kernel left in the
    register, which must not be read as its result). Outside the main thread, where
    no handler can be set, nothing is caught. (A class, not contextlib's decorator:
    no contextlib import at every start.)"""

    def __enter__(self) -> list[int]:
        self.trapped: list[int] = []
        try:
            self.old = _signal.signal(_signal.SIGSYS, lambda *_: self.trapped.append(1))
        except ValueError:  # not the main thread
            self.old = None
        return self.trapped

    def __exit__(self, *exc: object) -> None:
        if self.old is not None:
            _signal.signal(_signal.SIGSYS, self.old)
