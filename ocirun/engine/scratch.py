"""A private short directory under /tmp for the tracer's own files (socket path
aliases, /proc/PID/cmdline copies), made on first use and removed at the end."""

from __future__ import annotations

import os
import tempfile


class ScratchDir:
    def __init__(self) -> None:
        self.path: str | None = None
        self.entries: set[str] = set()  # names made in it, removed by cleanup()

    def get(self) -> str:
        if self.path is None:
            self.path = tempfile.mkdtemp(prefix="ocr", dir="/tmp")
        return self.path

    def cleanup(self) -> None:
        if self.path is None:
            return
        for entry in list(self.entries):
            try:
                os.unlink(entry)
            except OSError:
                pass
        try:
            os.rmdir(self.path)
        except OSError:
            pass
