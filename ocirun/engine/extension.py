"""The one small interface every engine extension implements (PRoot's extension/ model).

An extension is a module under ocirun/engine/extensions/ with one class derived
from Extension, plus one line in ocirun/engine/extensions/__init__.py. The tracer
calls the hooks below; an extension never touches ptrace itself, it uses the
Tracee and Syscall objects the engine hands it (ocirun/engine/tracee.py and
ocirun/engine/syscall.py own those; see their docstrings for the exact API:
reading/writing tracee memory, pushing scratch data on the tracee's stack,
changing arguments, skipping a syscall with a result, fixing a result at exit).

Order at a syscall entry: core path translation first, then each extension's
on_enter in list order (so an extension sees both guest and host paths). At the
exit stop: each extension's on_exit in reverse order, then the core restores
what it changed. An exit stop happens only if the syscall table asks for one or
an on_enter called `sc.want_exit()`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ocirun.engine.syscall import Syscall
    from ocirun.engine.tracee import Tracee


class Extension:
    """Base class: every hook is optional."""

    #: Name used in traces and in `--help` listings.
    name: str = "extension"

    #: Syscall names (as in the engine's syscall table) this extension must see,
    #: on top of the path syscalls the core already traps under seccomp.
    syscalls: frozenset[str] = frozenset()

    def attach(self, engine: Any) -> None:
        """Called once before the first guest process starts (engine = the tracer)."""

    def on_enter(self, tracee: Tracee, sc: Syscall) -> None:
        """Syscall entry, after the core's path translation."""

    def lend_search(self, tracee: Tracee, guest_path: str) -> bool:
        """The core's lookup of `guest_path` met a directory the real user may not
        search (EACCES): make it searchable and return True to have it retried."""
        return False

    def on_exit(self, tracee: Tracee, sc: Syscall) -> None:
        """Syscall exit (only if an exit stop was asked for)."""

    def on_fork(self, parent: Tracee, child: Tracee) -> None:
        """A new process or thread appeared (fork, vfork, clone, clone3)."""

    def on_exec(self, tracee: Tracee) -> None:
        """A successful execve, at the first stop of the new program."""

    def on_process_exit(self, tracee: Tracee) -> None:
        """A traced process or thread is gone."""

    def detach(self, engine: Any) -> None:
        """Called once when the whole guest tree is gone (flush state to disk, ...)."""
