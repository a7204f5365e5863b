"""The one plug-in point of the engine (PRoot's extension/ model).

An extension is a module (or a folder) under ocirun/engine/extensions/ with one
class derived from Extension, plus one line in EXTENSIONS of
ocirun/engine/extensions/__init__.py. The tracer calls the hooks below; an
extension never touches ptrace itself, it uses the Tracee and Syscall objects
the engine hands it (ocirun/engine/tracee.py and ocirun/engine/syscall.py own
those: reading/writing tracee memory, pushing scratch data on the tracee's
stack, changing arguments, skipping a syscall with a result, fixing a result at
exit) and what `Engine` below offers (the ptrace emulation, extensions/ptrace/,
is the one that makes ptrace requests: its guest tracer's). Extensions never look each other up:
what one must tell the others goes through the engine's broadcasts.

Hooks, in the order of a syscall's life:
  wrap_fs          once, at attach time: every host query of the guest path
                   resolution goes through the returned FsView (host path hook)
  on_enter         syscall entry, after the core's translation: sc.guest_paths
                   and sc.host_paths hold both sides of every path argument;
                   extensions in list order, the first sc.skip() ends the round
  on_exit          the exit stop (asked for by the table or by sc.want_exit()),
                   extensions in reverse order
  on_fork          a new process or thread: inherit state from the parent
  on_exec          a successful execve, at the first stop of the new program
  on_process_exit  a traced process or thread is gone (tracee.status: its wait status)
  on_stop          the tracee is in a ptrace-stop the core is done with (a Stop: syscall
                   entry before any translation, syscall exit after every fix-up, signal,
                   group stop, event, first stop of a new tracee); returning True keeps it
                   stopped until the extension calls Engine.resume (ptrace emulation)
Broadcasts (an extension calls the Engine method, every extension's hook runs):
  stat_changes         the changes each extension makes to a stat result, for
                       the extension that answers stats itself (answers_stat)
  on_host_rename       a file moved on the host by an extension, not the guest
  on_inode_gone        a file removed on the host by an extension
  before_host_change   an extension is about to change these host paths for a
                       tracee (with the guest's powers: fake root grants access)
Queries (an extension asks the Engine, the first extension that knows answers):
  guest_euid           the effective uid the guest sees (fake_euid)
  materialise          make a lazily made directory of the rootfs real (copy-up's tree)
  lend_search          (the core asks) make a directory the real user may not
                       search searchable, so a lookup can be retried (-0)
"""

from __future__ import annotations

import os

from ocirun.util.records import dataclass

TYPE_CHECKING = False  # typing's, without importing typing (start-up time)
if TYPE_CHECKING:
    from types import ModuleType
    from typing import Protocol

    from ocirun.engine.arch import Arch
    from ocirun.engine.extensions.shared.statbuf import StatView
    from ocirun.engine.path.fsview import FsView
    from ocirun.engine.plan import EnginePlan
    from ocirun.engine.syscall import Syscall
    from ocirun.engine.tracee import Tracee
    from ocirun.engine.view import View
else:
    Protocol = object  # typing's Protocol matters to type checkers only (start-up time)


# Stop.kind: what the tracee stopped at (the kernel's ptrace-stops, as the core met them)
STOP_ENTRY = "entry"  # syscall-enter stop (a tracee resumed with PTRACE_SYSCALL), before translation
STOP_EXIT = "exit"  # syscall-exit stop, after the core's and the extensions' fix-ups (Stop.sc)
STOP_SIGNAL = "signal"  # signal-delivery-stop of Stop.sig
STOP_GROUP = "group"  # group-stop (job control) on Stop.sig: the core would PTRACE_LISTEN
STOP_EVENT = "event"  # PTRACE_EVENT_* stop (Stop.event: fork, vfork, clone, exec, exit...)
STOP_FIRST = "first"  # the first stop of a new process or thread (auto-attached)
STOP_INTERRUPT = "interrupt"  # PTRACE_EVENT_STOP that is no group-stop (PTRACE_INTERRUPT, LISTEN's notice)


@dataclass(frozen=True, slots=True)
class Stop:
    """One ptrace-stop of a tracee, as Extension.on_stop sees it."""

    kind: str
    sig: int = 0  # the signal of the stop (the one the core would deliver for STOP_SIGNAL)
    event: int = 0  # PTRACE_EVENT_* of STOP_EVENT and STOP_INTERRUPT
    sc: Syscall | None = None  # STOP_EXIT: the syscall, if the core followed it


class Engine(Protocol):
    """What an extension may see and do of the tracer (ocirun/engine/loop.py)."""

    plan: EnginePlan  # rootfs, bindings, argv
    arch: Arch  # register slots (sp_slot for the auxv), red zone
    verbose: int  # PRoot's -v: report what goes wrong at 1 and more
    names: dict[str, int]  # syscall name -> number on this architecture
    shares_inodes: bool  # an extension declared the rootfs shares files with other trees
    stat_answered: bool  # an extension answers stat calls itself (applies stat_changes)
    changes_stats: bool  # an extension has stat_changes to apply
    lazy_tree: bool  # an extension makes the rootfs's directories on first use (materialise)

    def invalidate(self, *hosts: str) -> None:
        """Every path cache forgets these host paths (changed behind the guest's back)."""

    def stat_changes(self, view: StatView) -> dict[str, int]:
        """Every extension's changes to this stat result (statbuf field -> value)."""

    def host_renamed(self, old: str, new: str) -> None:
        """Tell every extension a file moved on the host (on_host_rename)."""

    def inode_gone(self, st: os.stat_result) -> None:
        """Tell every extension the file with this inode is gone (on_inode_gone)."""

    def before_host_change(self, tracee: Tracee, hosts: tuple[str, ...]) -> None:
        """Tell every extension these host paths are about to change for `tracee`."""

    def guest_euid(self, tracee: Tracee) -> int:
        """The effective uid the guest sees for `tracee` (an extension's fake ids, or the real one)."""

    def materialise(self, host_dir: str) -> bool:
        """Make a lazily made directory of the rootfs real; True if it is a directory now."""

    def resume(self, tracee: Tracee, sig: int = 0) -> None:
        """Let a tracee an extension kept stopped go on, delivering `sig`: one held at a
        syscall entry (Syscall.hold: its syscall skipped), or kept in a stop (on_stop), with
        tracee.resume_request (PTRACE_SYSCALL, PTRACE_SINGLESTEP) if set, else as the core does."""

    def tracee(self, pid: int) -> Tracee | None:
        """The traced thread `pid`, if it is one of the guest's."""

    def every_stop_in_python(self) -> None:
        """The compiled fast path finishes no stop from now on (every stop reaches the hooks)."""


class Extension:
    """Base class: every hook is optional."""

    #: Name used in traces and in `--help` listings.
    name: str = "extension"

    #: Syscall names (as in the engine's syscall table) this extension must see,
    #: on top of the path syscalls the core already traps under seccomp.
    syscalls: frozenset[str] = frozenset()

    #: The rootfs this extension serves shares regular files (hard links) with
    #: other trees: nobody may change a multiply-linked file in place.
    shares_inodes: bool = False

    #: Its hooks look only at its own `syscalls` and at stops (on_stop), never at the
    #: core's path syscalls: the fast path may finish those while it is loaded.
    only_own_syscalls: bool = False

    #: Of its own `syscalls`, those it has nothing to do with until it has called
    #: Engine.every_stop_in_python(): the fast path lets them run until then (the
    #: ptrace emulation's wait4/waitid, which matter only once a guest traces).
    fast_pass: frozenset[str] = frozenset()

    #: Its on_stop keeps no signal-delivery stop and no new child's first stop while
    #: the fast path runs (it calls Engine.every_stop_in_python() before it would): the
    #: fast path may resume those itself (ocirun/engine/fastexec.py).
    plain_stops: bool = False

    #: Its on_fork needs nothing of the fork's stop (it keeps state of its own, which
    #: each later stop it sees finds updated): the fast path may resume a fork event and
    #: have the hook run when it hands the event to Python, in order (fastexec.started).
    fork_hook_later: bool = False

    #: This extension answers stat calls in the tracer (the kernel never runs
    #: them, so exit hooks never see them): it applies Engine.stat_changes.
    answers_stat: bool = False

    def attach(self, engine: Engine) -> None:
        """Called once before the first guest process starts."""

    def wrap_fs(self, fs: FsView) -> FsView:
        """The host file system view the guest's path resolution uses."""
        return fs

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

    def on_stop(self, tracee: Tracee, stop: Stop) -> bool:
        """The tracee is in a ptrace-stop the core is done with: True keeps it stopped
        (the extension resumes it later with Engine.resume)."""
        return False

    def stat_changes(self, view: StatView) -> dict[str, int]:
        """This extension's changes to a stat result another extension answers."""
        return {}

    def on_host_rename(self, old: str, new: str) -> None:
        """Another extension moved a file on the host."""

    def on_inode_gone(self, st: os.stat_result) -> None:
        """Another extension removed the last name of this file on the host."""

    def before_host_change(self, tracee: Tracee, hosts: tuple[str, ...]) -> None:
        """Another extension is about to change these host paths for `tracee`."""

    def fake_euid(self, tracee: Tracee) -> int | None:
        """The effective uid this extension makes `tracee` see (None: it fakes no ids)."""
        return None

    def materialise(self, host_dir: str) -> bool | None:
        """Make `host_dir` of a lazily made tree real (None: this extension makes none)."""
        return None

    def use_fast_path(self, fast: ModuleType | None) -> frozenset[str]:
        """The compiled fast path runs beside this extension (only_own_syscalls), or no
        longer (None): it may mirror into it what lets it finish some of its own syscalls
        (ocirun/engine/_fakeroot.c), each piece kept exact by its own invalidation.
        Returns those of its syscalls the fast path may translate as the core's plain
        ones (its C part sends to Python the stops the extension has work at)."""
        return frozenset()

    def detach(self, engine: Engine) -> None:
        """Called once when the whole guest tree is gone (flush state to disk, ...)."""


def see_paths(extensions: list[Extension]) -> bool:
    """Whether some of these extensions look at the core's path syscalls (no fast path then)."""
    return any(not e.only_own_syscalls for e in extensions)


class ExtensionHost:
    """The engine's side of the plug-in point: the broadcasts of `Engine` over the
    extension list, the capabilities the extensions declare, the file system view
    they wrap. The tracer (ocirun/engine/loop.py) is one."""

    extensions: list[Extension]
    views: list[View]
    stop_hooks: list = []  # the on_stop of the extensions that have one (attach_extensions)

    def attach_extensions(self, root: View | None) -> None:
        """attach() each extension in order; the root view's resolver gets their wrap_fs."""
        self.shares_inodes = any(e.shares_inodes for e in self.extensions)
        self.stat_answered = any(e.answers_stat for e in self.extensions)
        self.changes_stats = any(type(e).stat_changes is not Extension.stat_changes for e in self.extensions)
        self.lazy_tree = any(type(e).materialise is not Extension.materialise for e in self.extensions)
        self.stop_hooks = [e.on_stop for e in self.extensions if type(e).on_stop is not Extension.on_stop]
        for ext in self.extensions:
            ext.attach(self)  # type: ignore[arg-type]
            if root is not None:
                root.translator.fs = ext.wrap_fs(root.translator.fs)

    def kept(self, t: Tracee, kind: str, sig: int = 0, event: int = 0, sc: Syscall | None = None) -> bool:
        """Whether an extension keeps `t` in this stop (on_stop) instead of the core resuming it."""
        hooks = self.stop_hooks
        if not hooks:
            return False
        stop = Stop(kind, sig, event, sc)
        return any(hook(t, stop) for hook in hooks)

    def invalidate(self, *hosts: str) -> None:
        for view in self.views:
            for h in hosts:
                view.translator.invalidate(h)

    def stat_changes(self, view: StatView) -> dict[str, int]:
        changes: dict[str, int] = {}
        for ext in self.extensions:
            changes.update(ext.stat_changes(view))
        return changes

    def host_renamed(self, old: str, new: str) -> None:
        for ext in self.extensions:
            ext.on_host_rename(old, new)

    def inode_gone(self, st: os.stat_result) -> None:
        for ext in self.extensions:
            ext.on_inode_gone(st)

    def before_host_change(self, tracee: Tracee, hosts: tuple[str, ...]) -> None:
        for ext in self.extensions:
            ext.before_host_change(tracee, hosts)

    def guest_euid(self, tracee: Tracee) -> int:
        for ext in self.extensions:
            euid = ext.fake_euid(tracee)
            if euid is not None:
                return euid
        return os.geteuid()

    def materialise(self, host_dir: str) -> bool:
        for ext in self.extensions:
            done = ext.materialise(host_dir)
            if done is not None:
                return done
        return os.path.isdir(host_dir)
