"""A private short directory for the tracer's own files (socket path aliases,
/proc/PID/cmdline copies, loaders named after programs), made on first use and
removed at the end.

Short matters (a socket alias must fit in 108 bytes): the shorter of $TMPDIR and
/tmp that we can write to. Android has no /tmp for apps; Termux sets TMPDIR."""

from __future__ import annotations

import os

PREFIX = "ocr"  # the scratch directory's name starts so (short: socket aliases must fit)


class ScratchDir:
    def __init__(self) -> None:
        self.path: str | None = None
        self.entries: set[str] = set()  # names made in it, removed by cleanup()
        self._link_dirs: dict[str, str] = {}  # named_link target -> its directory

    def get(self) -> str:
        if self.path is None:
            bases = {d for d in (os.environ.get("TMPDIR"), "/tmp") if d and os.access(d, os.W_OK | os.X_OK)}
            if not bases:
                import tempfile  # (only then: the module costs start-up time)

                bases = {tempfile.gettempdir()}
            self.path = _mkdtemp(min(bases, key=len))
        return self.path

    def named_link(self, target: str, name: str) -> str:
        """A symlink called `name` to `target` (one directory per target), made once.

        The kernel names a process (/proc/PID/comm, what ps and top show) after the
        file execve was given: a loader run through such a link is named like the
        program it runs."""
        dirs = self._link_dirs
        d = dirs.get(target)
        if d is None:
            d = dirs[target] = f"{self.get()}/x{len(dirs)}"
            os.mkdir(d, 0o700)
            self.entries.add(d)
        link = f"{d}/{name}"
        if link not in self.entries:
            try:
                os.symlink(target, link)
            except FileExistsError:
                pass
            self.entries.add(link)
        return link

    def cleanup(self) -> None:
        if self.path is None:
            return
        for entry in sorted(self.entries, key=len, reverse=True):  # links before their directories
            try:
                if os.path.isdir(entry) and not os.path.islink(entry):
                    os.rmdir(entry)
                else:
                    os.unlink(entry)
            except OSError:
                pass
        try:
            os.rmdir(self.path)
        except OSError:
            pass


def _mkdtemp(base: str) -> str:
    """tempfile.mkdtemp(prefix="ocr", dir=base): a new private directory."""
    for _ in range(100):
        path = f"{base}/{PREFIX}{os.urandom(6).hex()}"
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            continue
        return path
    raise FileExistsError(f"no new directory could be made in {base}")
