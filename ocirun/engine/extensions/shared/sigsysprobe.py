"""A probe's call that a host seccomp policy may answer with SIGSYS (Android's app
filter): the signal is caught for the call's length instead of killing the tracer."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def catching_sigsys() -> Iterator[list[int]]:
    """Within the block a SIGSYS is only noted: the list it yields is not empty after
    the block if one came (the trapped call returned whatever the kernel left in the
    register, which must not be read as its result). Outside the main thread, where
    no handler can be set, nothing is caught."""
    trapped: list[int] = []
    try:
        old = signal.signal(signal.SIGSYS, lambda *_: trapped.append(1))
    except ValueError:  # not the main thread
        old = None
    try:
        yield trapped
    finally:
        if old is not None:
            signal.signal(signal.SIGSYS, old)
