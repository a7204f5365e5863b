"""Per-layer download (and upload) progress on a terminal (stderr), silent otherwise.

One line per blob: short digest, state, bytes done / total, speed. Lines are redrawn
in place with ANSI cursor movement at most every 0.1 s; no dependency needed.
"""

from __future__ import annotations

import shutil
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import TextIO

from ocirun.util.fmt import human_size

_COUNTED = ("Downloading", "Pull complete", "Verified", "Pushing", "Pushed")  # states shown with byte counts


@dataclass
class _Line:
    digest: str
    total: int
    done: int = 0
    state: str = "Waiting"
    started: float = field(default_factory=time.monotonic)
    ended: float | None = None

    def render(self) -> str:
        short = self.digest.partition(":")[2][:12] or self.digest[:12]
        if self.state in _COUNTED:
            elapsed = max((self.ended or time.monotonic()) - self.started, 1e-6)
            speed = f"{human_size(self.done / elapsed)}/s"
            total = human_size(self.total) if self.total >= 0 else "?"
            return f"{short}: {self.state:<13} {human_size(self.done):>9} / {total:<9} {speed}"
        return f"{short}: {self.state}"


class Progress:
    """Thread-safe progress board; a no-op when disabled."""

    def __init__(self, enabled: bool | None = None, stream: TextIO | None = None):
        self.stream = stream or sys.stderr
        if enabled is None:
            enabled = bool(getattr(self.stream, "isatty", lambda: False)())
        self.enabled = enabled
        self._lines: dict[str, _Line] = {}
        self._order: list[str] = []
        self._drawn = 0
        self._last = 0.0
        self._lock = threading.Lock()

    def message(self, text: str) -> None:
        """A line above the board (e.g. 'Pulling from library/debian')."""
        if self.enabled:
            with self._lock:
                self._erase()
                self.stream.write(text + "\n")
                self._draw()

    def add(self, digest: str, total: int, state: str = "Waiting") -> None:
        with self._lock:
            if digest not in self._lines:
                self._lines[digest] = _Line(digest, total, state=state)
                self._order.append(digest)
            self._refresh(force=True)

    def start(self, digest: str, offset: int = 0, state: str = "Downloading") -> None:
        with self._lock:
            line = self._lines.get(digest)
            if line:
                line.state, line.done, line.started = state, offset, time.monotonic()
            self._refresh(force=True)

    def advance(self, digest: str, nbytes: int) -> None:
        with self._lock:
            line = self._lines.get(digest)
            if line:
                line.done += nbytes
            self._refresh()

    def finish(self, digest: str, state: str = "Pull complete") -> None:
        with self._lock:
            line = self._lines.get(digest)
            if line:
                line.state, line.ended = state, time.monotonic()
            self._refresh(force=True)

    def close(self) -> None:
        with self._lock:
            self._refresh(force=True)

    def _refresh(self, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last < 0.1:
            return
        self._last = now
        self._erase()
        self._draw()

    def _erase(self) -> None:
        if self._drawn:
            self.stream.write(f"\x1b[{self._drawn}F\x1b[J")
            self._drawn = 0

    def _draw(self) -> None:
        lines = [self._lines[d] for d in self._order]
        room = max(shutil.get_terminal_size((80, 24)).lines - 2, 3)
        if len(lines) > room:
            # Cursor movement cannot reach above the screen: fold finished lines into one.
            done = [ln for ln in lines if ln.ended is not None or ln.state == "Already exists"]
            rest = [ln for ln in lines if ln not in done][-(room - 1):]
            out = [f"{len(done)} of {len(lines)} layers done"] + [ln.render() for ln in rest]
        else:
            out = [ln.render() for ln in lines]
        for text in out:
            self.stream.write(text + "\n")
        self._drawn = len(out)
        self.stream.flush()
