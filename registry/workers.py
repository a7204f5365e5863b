"""Blob transfers in a thread pool (pull's downloads, push's uploads): the first failure wins.

Each task gets the shared `stop` event: it is set on the first failure and on
Ctrl-C, and a transfer checks it at its next chunk (raising `Cancelled`, which is
not an error of its own), so the others end quickly and the first error is raised.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import TypeVar

T = TypeVar("T")


class Cancelled(Exception):
    """Raised inside a task after another one failed (never escapes run_parallel)."""


def run_parallel(items: Sequence[T], task: Callable[[T], None], workers: int, stop: threading.Event) -> None:
    """Run `task(item)` for every item on up to `workers` threads; re-raise the first failure."""
    if not items:
        return
    pool = ThreadPoolExecutor(max_workers=max(1, min(workers, len(items))))
    futures = [pool.submit(task, item) for item in items]
    first: BaseException | None = None
    try:
        for fut in as_completed(futures):
            try:
                fut.result()
            except Cancelled:
                pass
            except Exception as exc:
                if first is None:
                    first = exc
                    stop.set()
    except BaseException:  # KeyboardInterrupt: a pull's partial files stay for a resumed pull
        stop.set()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    if first is not None:
        raise first
