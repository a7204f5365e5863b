"""`-l/--link2symlink`: hard links emulated with symbolic links (Android forbids link()).

link(old, new) moves the file to a hidden store in the guest root,
`/.ocirun-l2s/<id>`, and leaves two symlinks, `old` and `new`, pointing at it by
its guest-absolute path. The store keeps the link count beside each file as a
tiny symlink `<id>.nlink -> "N"` (written atomically with rename), so the
count survives runs without any database. The guest never sees the symlinks:
lstat/readlink/lchown/O_NOFOLLOW... on one act on the store file, stat shows
the right link count, unlink removes one name and the store file goes with
the last one, rename over a name gives up that name.

Turned on by -l, OCIRUN_LINK2SYMLINK=1, or automatically when a probe link()
in the rootfs fails with EACCES/EPERM (link2symlink_needed).
"""

from __future__ import annotations

import errno
import os
import secrets
import sqlite3
import stat
from typing import TYPE_CHECKING

from ocirun.engine.extension import Extension
from ocirun.engine.extensions.shared import statbuf
from ocirun.engine.extensions.shared.common import report_error as _report
from ocirun.engine.syscalls import O_NOFOLLOW
from ocirun.util.linux import AT_REMOVEDIR, AT_SYMLINK_NOFOLLOW

if TYPE_CHECKING:
    from ocirun.engine.extension import Engine
    from ocirun.engine.syscall import Syscall
    from ocirun.engine.tracee import Tracee

STORE = "/.ocirun-l2s"
ENV = "OCIRUN_LINK2SYMLINK"
RENAME_EXCHANGE = 2

# syscalls that act on a symlink itself: (path arg, flags arg or None, flag meaning "nofollow"
# (None: always nofollow), or "open" for O_NOFOLLOW)
_NOFOLLOW = {
    "lstat": (0, None, None),
    "newfstatat": (1, 3, AT_SYMLINK_NOFOLLOW),
    "statx": (1, 2, AT_SYMLINK_NOFOLLOW),
    "lchown": (0, None, None),
    "fchownat": (1, 4, AT_SYMLINK_NOFOLLOW),
    "utimensat": (1, 3, AT_SYMLINK_NOFOLLOW),
    "fchmodat2": (1, 3, AT_SYMLINK_NOFOLLOW),
    "faccessat2": (1, 3, AT_SYMLINK_NOFOLLOW),
    "lgetxattr": (0, None, None),
    "lsetxattr": (0, None, None),
    "llistxattr": (0, None, None),
    "lremovexattr": (0, None, None),
    "open": (0, 1, O_NOFOLLOW),
    "openat": (1, 2, O_NOFOLLOW),
}
_STAT = {"stat": (1, "stat"), "lstat": (1, "stat"), "fstat": (1, "stat"),
         "newfstatat": (2, "stat"), "statx": (4, "statx")}
_LINKS = {"link": (0, 1, None), "linkat": (1, 3, 4)}
_UNLINKS = {"unlink": (0, None), "unlinkat": (1, 2)}
_READLINKS = {"readlink": 0, "readlinkat": 1}
_RENAMES = {"rename": (0, 1, None), "renameat": (1, 3, None), "renameat2": (1, 3, 4)}


def link2symlink_needed(rootfs: str) -> bool:
    """Probe: does link() work in this rootfs? (Android's SELinux says EACCES.)

    The host's own root is never probed (nor emulated by default): no file is
    created in `/` just to ask.
    """
    if os.path.realpath(rootfs) == "/":
        return False
    probe = os.path.join(rootfs, f".ocirun-link-probe-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        fd = os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except OSError:
        return False  # cannot even create a file: nothing to decide here
    os.close(fd)
    try:
        os.link(probe, probe + ".l")
    except OSError as e:
        return e.errno in (errno.EACCES, errno.EPERM)
    else:
        os.unlink(probe + ".l")
        return False
    finally:
        os.unlink(probe)


class Link2Symlink(Extension):
    name = "link2symlink"
    syscalls = frozenset(set(_NOFOLLOW) | set(_STAT) | set(_LINKS) | set(_UNLINKS)
                         | set(_READLINKS) | set(_RENAMES))

    def __init__(self) -> None:
        self.store_host = ""
        self.engine: Engine | None = None
        self.inodes: dict[tuple[int, int], str] = {}  # store file inode -> store id

    def attach(self, engine: Engine) -> None:
        self.engine = engine
        self.store_host = os.path.join(os.path.realpath(engine.plan.rootfs), STORE.lstrip("/"))
        try:
            names = os.listdir(self.store_host)
        except OSError:
            names = []
        for name in names:
            if name.endswith(".nlink"):
                continue
            try:
                st = os.lstat(os.path.join(self.store_host, name))
            except OSError:
                continue
            self.inodes[(st.st_dev, st.st_ino)] = name

    # ---- the store --------------------------------------------------------------------

    def _store_id(self, host: str) -> str | None:
        """The store id a host path's symlink points to, or None if not one of ours."""
        try:
            target = os.readlink(host)
        except OSError:
            return None
        if target.startswith(STORE + "/"):
            ident = target[len(STORE) + 1 :]
            if "/" not in ident and ident:
                return ident
        return None

    def _store_path(self, ident: str) -> str:
        return os.path.join(self.store_host, ident)

    def _count(self, ident: str) -> int:
        try:
            return int(os.readlink(self._store_path(ident) + ".nlink"))
        except (OSError, ValueError):
            return 1

    def _set_count(self, ident: str, count: int) -> None:
        path = self._store_path(ident) + ".nlink"
        tmp = f"{path}.{secrets.token_hex(4)}"
        os.symlink(str(count), tmp)
        os.rename(tmp, path)

    def _drop(self, ident: str) -> None:
        """One name of the file is gone."""
        count = self._count(ident) - 1
        if count > 0:
            self._set_count(ident, count)
            return
        path = self._store_path(ident)
        try:
            st = os.lstat(path)
            self.inodes.pop((st.st_dev, st.st_ino), None)
            if st.st_nlink <= 1:
                self.engine.inode_gone(st)
            os.unlink(path)
        except OSError:
            pass
        try:
            os.unlink(path + ".nlink")
        except OSError:
            pass

    def _invalidate(self, *hosts: str) -> None:
        self.engine.invalidate(*hosts)

    # ---- hooks ------------------------------------------------------------------------

    def on_enter(self, tracee: Tracee, sc: Syscall) -> None:
        try:
            self._on_enter(tracee, sc)
        except (OSError, sqlite3.Error) as exc:  # e.g. the tracee died: leave the syscall
            _report(tracee, sc, exc)

    def _on_enter(self, tracee: Tracee, sc: Syscall) -> None:
        name = sc.name
        if name in _LINKS:
            self._link(tracee, sc)
            return
        if not self.inodes:
            return  # nothing emulated in this rootfs yet
        if name in _UNLINKS:
            self._unlink(tracee, sc)
        elif name in _READLINKS:
            host = sc.host_paths.get(_READLINKS[name])
            if host and self._store_id(host) is not None:
                sc.skip(-errno.EINVAL)
        elif name in _RENAMES:
            self._rename(tracee, sc)
        if sc.skipped:
            return
        if name in _NOFOLLOW:
            path_arg, flags_arg, flag = _NOFOLLOW[name]
            nofollow = flag is None or (sc.args[flags_arg] & flag)
            host = sc.host_paths.get(path_arg)
            if nofollow and host:
                ident = self._store_id(host)
                if ident is not None:
                    store = self._store_path(ident)
                    sc.set_arg(path_arg, sc.push_string(store))
                    sc.host_paths[path_arg] = store  # later extensions act on the store file
        if name in _STAT and not self.engine.stat_answered:
            sc.want_exit()

    def stat_changes(self, view: statbuf.StatView) -> dict[str, int]:
        """The link count a stat must show for a store file (for an extension answering stats)."""
        ident = self.inodes.get((view.dev, view.ino))
        if ident is None:
            return {}
        return {"nlink": self._count(ident) + max(0, view.nlink - 1)}

    def on_exit(self, tracee: Tracee, sc: Syscall) -> None:
        try:
            self._on_exit(tracee, sc)
        except (OSError, sqlite3.Error) as exc:
            _report(tracee, sc, exc)

    def _on_exit(self, tracee: Tracee, sc: Syscall) -> None:
        name = sc.name
        if name in _STAT:
            if sc.result == 0:
                self._fix_nlink(tracee, sc)
            return
        if name in _RENAMES:
            note = tracee.data.pop("l2s.replaced", None)
            if note is not None and note[0] is sc and sc.result == 0:
                self._drop(note[1])

    def _fix_nlink(self, tracee: Tracee, sc: Syscall) -> None:
        index, kind = _STAT[sc.name]
        addr = sc.args[index]
        size = statbuf.STAT_SIZE if kind == "stat" else statbuf.STATX_SIZE
        try:
            buf = tracee.read(addr, size)
        except OSError:
            return
        view = statbuf.parse_stat(buf) if kind == "stat" else statbuf.parse_statx(buf)
        ident = self.inodes.get((view.dev, view.ino))
        if ident is None:
            return
        nlink = self._count(ident) + max(0, view.nlink - 1)
        patch = statbuf.patch_stat if kind == "stat" else statbuf.patch_statx
        try:
            tracee.write(addr, patch(buf, nlink=nlink))
        except OSError:
            pass

    def _as_root(self, tracee: Tracee, *hosts: str) -> None:
        """The guest's powers for the changes this extension makes itself (fake root)."""
        self.engine.before_host_change(tracee, hosts)

    def _link(self, tracee: Tracee, sc: Syscall) -> None:
        old_arg, new_arg, flags_arg = _LINKS[sc.name]
        old, new = sc.host_paths.get(old_arg), sc.host_paths.get(new_arg)
        if not old or not new:
            return  # AT_EMPTY_PATH and friends: let the kernel answer
        self._as_root(tracee, old, new)
        try:
            st = os.lstat(old)
        except OSError as e:
            sc.skip(-(e.errno or errno.ENOENT))
            return
        if os.path.lexists(new):
            sc.skip(-errno.EEXIST)
            return
        if stat.S_ISDIR(st.st_mode):
            sc.skip(-errno.EPERM)
            return
        try:
            ident = self._store_id(old) if stat.S_ISLNK(st.st_mode) else None
            if ident is None and os.path.dirname(old) == self.store_host:
                ident = os.path.basename(old)  # linkat(AT_SYMLINK_FOLLOW) of one of ours
            if ident is not None:
                os.symlink(f"{STORE}/{ident}", new)
                self._set_count(ident, self._count(ident) + 1)
            elif stat.S_ISLNK(st.st_mode):
                os.symlink(os.readlink(old), new)  # a hard link to a symlink: a copy
            else:
                ident = self._adopt(old, st)
                if ident is None:
                    os.link(old, new)  # another filesystem than the store: try for real
                else:
                    os.symlink(f"{STORE}/{ident}", new)
                    self._set_count(ident, 2)
        except OSError as e:
            sc.skip(-(e.errno or errno.EIO))
            return
        self._invalidate(old, new)
        sc.skip(0)

    def _adopt(self, old: str, st: os.stat_result) -> str | None:
        """Move `old` into the store, leave a symlink in its place; None on EXDEV."""
        os.makedirs(self.store_host, mode=0o755, exist_ok=True)
        ident = f"{st.st_ino:x}-{secrets.token_hex(6)}"
        store = self._store_path(ident)
        try:
            os.rename(old, store)
        except OSError as e:
            if e.errno == errno.EXDEV:
                return None
            raise
        try:
            os.symlink(f"{STORE}/{ident}", old)
        except OSError:
            os.rename(store, old)
            raise
        self.inodes[(st.st_dev, st.st_ino)] = ident
        self.engine.host_renamed(old, store)
        return ident

    def _unlink(self, tracee: Tracee, sc: Syscall) -> None:
        path_arg, flags_arg = _UNLINKS[sc.name]
        if flags_arg is not None and sc.args[flags_arg] & AT_REMOVEDIR:
            return
        host = sc.host_paths.get(path_arg)
        if not host:
            return
        ident = self._store_id(host)
        if ident is None:
            return
        self._as_root(tracee, host)
        try:
            os.unlink(host)
        except OSError as e:
            sc.skip(-(e.errno or errno.EIO))
            return
        self._drop(ident)
        self._invalidate(host)
        sc.skip(0)

    def _rename(self, tracee: Tracee, sc: Syscall) -> None:
        old_arg, new_arg, flags_arg = _RENAMES[sc.name]
        if flags_arg is not None and sc.args[flags_arg] & RENAME_EXCHANGE:
            return
        old, new = sc.host_paths.get(old_arg), sc.host_paths.get(new_arg)
        if not old or not new:
            return
        replaced = self._store_id(new)
        if replaced is None:
            return
        if self._store_id(old) == replaced:
            sc.skip(0)  # rename(2): two links to the same file: nothing happens
            return
        tracee.data["l2s.replaced"] = (sc, replaced)
        sc.want_exit()
