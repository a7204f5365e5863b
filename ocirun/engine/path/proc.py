"""/proc as the guest sees it.

The translator's side (is_proc_magic_link, proc_link): /proc/self and
/proc/thread-self name the tracee, magic links (/proc/PID/{cwd,exe,fd/N}) are
followed in the guest when something comes after them and handed to the kernel
as they are when last; /proc/PID/root is the guest root.

The tracer's side (ProcFiles): /proc/PID/exe of a tracee leads to the program
it runs, not to the loader that runs it; readlink of magic links shows guest
paths; /proc/PID/cmdline of a program started through its loader is a copy
without the loader's words; /proc/PID/root/... leads into the guest root when
the guest sees the host's /proc.
"""

from __future__ import annotations

import errno
import os

from ocirun.engine.path.auxv import program_auxv
from ocirun.engine.path.errors import GuestPathError

TYPE_CHECKING = False  # typing's, without importing typing (start-up time)
if TYPE_CHECKING:
    from ocirun.engine.loop import Tracer
    from ocirun.engine.path.translator import PathTranslator
    from ocirun.engine.syscall import Syscall
    from ocirun.engine.tracee import Tracee

ENC = "surrogateescape"
_PROC_FD_DIRS = frozenset({"fd", "map_files"})
_PROC_LINKS = frozenset({"exe", "cwd", "root"})


def proc_entry(path: str) -> tuple[str, str] | None:
    """/proc/(self|PID)[/task/TID]/REST as (self or PID, REST); None for other paths.
    (String work rather than the re module: `import re` costs every start ~3 ms.)"""
    if not path.startswith("/proc/"):
        return None
    who, sep, rest = path[6:].partition("/")
    if not sep or not (who == "self" or who.isdecimal()):
        return None
    if rest.startswith("task/"):
        tid, sep, after = rest[5:].partition("/")
        if sep and tid.isdecimal():
            rest = after
    return who, rest


def is_proc_magic_link(host_path: str) -> bool:
    """/proc/<pid|self|thread-self>[/task/<tid>]/{exe,cwd,root,fd/N,map_files/X}: targets are host paths."""
    parts = host_path.split("/")
    if len(parts) < 4 or parts[0] or parts[1] != "proc":
        return False
    pid = parts[2]
    if not (pid.isdigit() or pid in ("self", "thread-self")):
        return False
    rest = parts[3:]
    if len(rest) >= 3 and rest[0] == "task" and rest[1].isdigit():
        rest = rest[2:]
    if len(rest) == 1:
        return rest[0] in _PROC_LINKS
    return len(rest) == 2 and rest[0] in _PROC_FD_DIRS and bool(rest[1])


def proc_link(translator: PathTranslator, h: str, target: str, pid: int | None, tid: int | None) -> str | None:
    """Target to follow, in the guest, for a symlink of the host's procfs.

    /proc/self and /proc/thread-self name the TRACEE (the tracer reading them
    would get its own pid). Magic links (/proc/PID/{cwd,exe,fd/N,map_files/X})
    hold host paths: they are mapped back into the guest (to go on resolving
    below them, and as the canonical guest path); None when they cannot be
    (pipes, sockets, deleted files, host paths the guest cannot see). As the
    last component a magic link is handed to the kernel as is (it reopens the
    very object); /proc/PID/root is always the guest root.
    """
    if h == "/proc/self":
        return str(pid) if pid is not None else target
    if h == "/proc/thread-self":
        if pid is None:
            return target
        return f"{pid}/task/{tid if tid is not None else pid}"
    if not is_proc_magic_link(h):
        return target
    if h.endswith("/root"):
        return "/"  # the tracee's root is the guest root
    if target[:1] != "/" or target.endswith(" (deleted)"):
        return None
    return translator.to_guest(target)


def _signed(v: int) -> int:
    return v - (1 << 64) if v & (1 << 63) else v


class ProcFiles:
    """The tracer's /proc fix-ups (they need to know the other tracees)."""

    def __init__(self, tracer: Tracer):
        self.tracer = tracer

    def tracee_of(self, t: Tracee, who: str) -> Tracee | None:
        if who == "self":
            return t
        return self.tracer.tracees.get(int(who))

    def exe_of(self, t: Tracee, path: str) -> str | None:
        """The program a /proc/PID/exe path of a tracee stands for (None: not one)."""
        entry = proc_entry(path)
        if entry is not None and entry[1] == "exe":
            target = self.tracee_of(t, entry[0])
            if target is not None and target.exe:
                return target.exe
        return None

    def guest_path(self, t: Tracee, guest: str, follow: bool) -> str:
        """/proc/PID/exe of a tracee leads to its program (not the loader that runs
        it); /proc/PID/root/... to the guest root, when the guest sees the host's /proc."""
        entry = proc_entry(guest)
        if entry is None:
            return guest
        rest = entry[1]
        if follow and rest == "exe":
            return self.exe_of(t, guest) or guest
        below = rest[4:] if rest.startswith("root/") else None  # the path below /proc/PID/root
        if (below or (follow and rest == "root")) and self._host_proc():
            return below or "/"
        return guest

    def _host_proc(self) -> bool:
        try:
            return self.tracer.root_view.translator.to_host("/proc", "/", True) == "/proc"
        except GuestPathError:
            return False

    def copy_file(self, t: Tracee, host: str) -> str:
        """/proc/PID/cmdline or /proc/PID/auxv of a program run through its loader: a
        copy as the program would have it (ps shows its argv, gdb finds it: path/auxv.py)."""
        entry = proc_entry(host)
        name = entry[1] if entry is not None else ""
        target = self.tracee_of(t, entry[0]) if name in ("cmdline", "auxv") else None
        if target is None or not target.loader_words:
            return host
        if name == "cmdline":
            data = self._cmdline(target)
        else:
            try:
                data = program_auxv(target.pid, target.view.to_host(target.exe))
            except GuestPathError:
                data = None
        if data is None:
            return host
        scratch = self.tracer.scratch
        path = f"{scratch.get()}/{name}.{target.pid}"
        with open(path, "wb") as f:
            f.write(data)
        scratch.entries.add(path)
        return path

    @staticmethod
    def _cmdline(target: Tracee) -> bytes | None:
        """The argv without the loader's words."""
        try:
            with open(f"/proc/{target.pid}/cmdline", "rb") as f:
                words = f.read().split(b"\0")
        except OSError:
            return None
        drop, prefix = target.loader_words
        if words and words[-1] == b"":
            words.pop()
        fixed = [w.encode("utf-8", ENC) for w in prefix] + words[drop:]
        return b"".join(w + b"\0" for w in fixed)

    def enter_readlink(self, t: Tracee, sc: Syscall) -> None:
        """readlink of a magic link: the guest path of its target."""
        idx = sc.spec.paths[0].arg
        host = sc.host_paths.get(idx)
        if host is None:
            return
        buf, size = sc.args[idx + 1], sc.args[idx + 2]
        if not host.startswith("/proc/") or not is_proc_magic_link(host):
            value = self._bound_link(t, sc.guest_paths.get(idx), host)
            if value is not None:
                self._answer(t, sc, buf, size, value)
            return
        value = self.exe_of(t, host)
        if value is None:
            parts = host.split("/")
            if parts[2] == "self":
                parts[2] = str(t.pid)
            elif parts[2] == "thread-self":
                parts[2:3] = [str(t.pid), "task", str(t.pid)]
            real = "/".join(parts)
            if parts[-1] == "root" and len(parts) in (4, 6):
                value = "/"
            else:
                try:
                    value = t.view.translator.readlink_guest(real)
                except OSError as exc:
                    sc.skip(-(exc.errno or errno.ENOENT))
                    return
        self._answer(t, sc, buf, size, value)

    @staticmethod
    def _answer(t: Tracee, sc: Syscall, buf: int, size: int, value: str) -> None:
        data = value.encode("utf-8", ENC)[: max(0, _signed(size))]
        if _signed(size) <= 0:
            sc.skip(-errno.EINVAL)
            return
        t.write(buf, data)
        sc.skip(len(data))

    @staticmethod
    def _bound_link(t: Tracee, guest: str | None, host: str) -> str | None:
        """readlink of a symlink inside a binding that points into it: the guest path
        (PRoot's rule, BindingMap.link_target); None: the kernel's answer is right."""
        translator = t.view.translator
        if guest is None or translator.rootfs == "/":
            return None
        try:
            target = os.readlink(host)
            base = "/" if guest.startswith("/") else t.guest_cwd()
            link = translator.canonical(guest, base, False, t.tgid, t.pid)
        except (OSError, GuestPathError):
            return None
        if target[:1] != "/":
            return None
        mapped = translator.bound_link_target(link, host, target)
        return mapped if mapped != target else None
