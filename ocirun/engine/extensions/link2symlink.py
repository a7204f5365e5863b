"""`-l/--link2symlink`: hard links emulated with symbolic links (Android forbids link()).

link(old, new) moves the file to a hidden store in the guest root,
`/.ocirun-l2s/<id>`, and leaves two symlinks, `old` and `new`, pointing at it by
its guest-absolute path. Where the guest root cannot hold it (the host's own root
with -r /, a binding on another filesystem, a read-only rootfs) the file moves
beside itself instead, to `.ocirun-l2s.<id>` in its own directory, as PRoot's
`.l2s.*` files do; a marker in the root store (when it can be written) says such
files exist. The store keeps the link count beside each file as a tiny symlink
`<id>.nlink -> "N"` (written atomically with rename), so the count survives runs
without any database. The guest never sees the symlinks:
lstat/readlink/lchown/O_NOFOLLOW... on one act on the store file, stat shows
the right link count, unlink removes one name and the store file goes with
the last one, rename over a name gives up that name.

Turned on by -l, OCIRUN_LINK2SYMLINK=1, or automatically when a probe link()
in the rootfs fails with EACCES/EPERM (shared/linkprobe.py).
"""

from __future__ import annotations

import errno
import os
import secrets
import sqlite3
import stat

from ocirun.engine.extension import Extension
from ocirun.engine.extensions.shared import statbuf
from ocirun.engine.extensions.shared.common import host_errors_reported, rewrite_guest_bytes
from ocirun.engine.syscalls import O_NOFOLLOW
from ocirun.util.linux import AT_REMOVEDIR, AT_SYMLINK_NOFOLLOW

TYPE_CHECKING = False  # typing's, without importing typing (start-up time)
if TYPE_CHECKING:
    from ocirun.engine.extension import Engine
    from ocirun.engine.syscall import Syscall
    from ocirun.engine.tracee import Tracee

STORE = "/.ocirun-l2s"
SIBLING = ".ocirun-l2s."  # prefix of a store file kept beside the original
ELSEWHERE = ".elsewhere"  # marker in the root store: sibling store files exist
_NO_ROOT_STORE = (errno.EXDEV, errno.EACCES, errno.EPERM, errno.EROFS)
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


class Link2Symlink(Extension):
    name = "link2symlink"
    syscalls = frozenset(set(_NOFOLLOW) | set(_STAT) | set(_LINKS) | set(_UNLINKS)
                         | set(_READLINKS) | set(_RENAMES))

    def __init__(self) -> None:
        self.store_host = ""
        self.engine: Engine | None = None
        self.inodes: dict[tuple[int, int], str] = {}  # store file inode -> its host path
        self.anywhere = False  # store files may be beside their names: always look
        self.root_store = True  # False in the host's own root (-r /): nothing is put there

    def attach(self, engine: Engine) -> None:
        self.engine = engine
        rootfs = os.path.realpath(engine.plan.rootfs)
        self.store_host = os.path.join(rootfs, STORE.lstrip("/"))
        if rootfs == "/":
            self.root_store, self.anywhere = False, True
            return
        try:
            names = os.listdir(self.store_host)
        except OSError:
            names = []
            self.anywhere = not os.access(rootfs, os.W_OK)
        for name in names:
            if name.endswith(".nlink") or name == ELSEWHERE:
                self.anywhere |= name == ELSEWHERE
                continue
            self._remember(os.path.join(self.store_host, name))

    def _remember(self, store: str) -> None:
        try:
            st = os.lstat(store)
        except OSError:
            return
        self.inodes[(st.st_dev, st.st_ino)] = store

    # ---- the store --------------------------------------------------------------------

    def _store_of(self, tracee: Tracee, host: str) -> str | None:
        """The host path of the store file a host path's symlink points to, or None if
        the path is not one of our names."""
        try:
            target = os.readlink(host)
        except OSError:
            return None
        if target.startswith(STORE + "/"):
            ident = target[len(STORE) + 1 :]
            if "/" not in ident and ident:
                return os.path.join(self.store_host, ident)
        elif target.startswith("/") and os.path.basename(target).startswith(SIBLING):
            try:
                return tracee.view.to_host(target, "/", False)
            except OSError:  # GuestPathError is one
                return None
        return None

    @staticmethod
    def _count(store: str) -> int:
        try:
            return int(os.readlink(store + ".nlink"))
        except (OSError, ValueError):
            return 1

    @staticmethod
    def _set_count(store: str, count: int) -> None:
        path = store + ".nlink"
        tmp = f"{path}.{secrets.token_hex(4)}"
        os.symlink(str(count), tmp)
        os.rename(tmp, path)

    def _drop(self, path: str) -> None:
        """One name of the store file `path` is gone."""
        count = self._count(path) - 1
        if count > 0:
            self._set_count(path, count)
            return
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

    @host_errors_reported(sqlite3.Error)
    def on_enter(self, tracee: Tracee, sc: Syscall) -> None:
        name = sc.name
        if name in _LINKS:
            self._link(tracee, sc)
            return
        if not self.inodes and not self.anywhere:
            return  # nothing emulated in this rootfs yet
        if name in _UNLINKS:
            self._unlink(tracee, sc)
        elif name in _READLINKS:
            host = sc.host_paths.get(_READLINKS[name])
            if host and self._store_of(tracee, host) is not None:
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
                store = self._store_of(tracee, host)
                if store is not None:
                    if self.anywhere:
                        self._remember(store)  # one from an earlier run: its stat needs the count
                    sc.set_arg(path_arg, sc.push_string(store))
                    sc.host_paths[path_arg] = store  # later extensions act on the store file
        if name in _STAT:
            host = next(iter(sc.host_paths.values()), None)
            if self.anywhere and host:  # a name of an earlier run: its store file's count
                store = self._store_of(tracee, host)
                if store is not None:
                    self._remember(store)
            if not self.engine.stat_answered:
                sc.want_exit()

    def stat_changes(self, view: statbuf.StatView) -> dict[str, int]:
        """The link count a stat must show for a store file (for an extension answering stats)."""
        store = self.inodes.get((view.dev, view.ino))
        if store is None:
            return {}
        return {"nlink": self._count(store) + max(0, view.nlink - 1)}

    @host_errors_reported(sqlite3.Error)
    def on_exit(self, tracee: Tracee, sc: Syscall) -> None:
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

        def fix(buf: bytes) -> bytes:
            changes = self.stat_changes(statbuf.parse(kind, buf))
            return statbuf.patch(kind, buf, **changes) if changes else buf

        rewrite_guest_bytes(tracee, sc.args[index], statbuf.result_size(kind), fix)

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
            self._link_names(tracee, sc, old, new, st)
        except OSError as e:
            sc.skip(-(e.errno or errno.EIO))
            return
        self._invalidate(old, new)
        sc.skip(0)

    def _link_names(self, tracee: Tracee, sc: Syscall, old: str, new: str, st: os.stat_result) -> None:
        """Make `new` another name of `old`'s file: a symlink to its store file."""
        store = self._store_of(tracee, old) if stat.S_ISLNK(st.st_mode) else None
        if store is not None:
            target = os.readlink(old)
            self._remember(store)
        elif self._is_store_file(old):  # linkat(AT_SYMLINK_FOLLOW) of one of ours
            store, target = old, self._guest_target(sc, old)
        elif stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(old), new)  # a hard link to a symlink: a copy
            return
        else:
            store, target = self._adopt(sc, old, st)
        os.symlink(target, new)
        self._set_count(store, self._count(store) + 1)  # a file just adopted counts 1 (no .nlink yet)

    def _is_store_file(self, host: str) -> bool:
        return os.path.dirname(host) == self.store_host or os.path.basename(host).startswith(SIBLING)

    def _guest_target(self, sc: Syscall, host: str) -> str:
        """The guest path a new name's symlink holds for the store file `host`."""
        if os.path.dirname(host) == self.store_host:
            return f"{STORE}/{os.path.basename(host)}"
        guest = sc.tracee.view.to_guest(host)
        if guest is None:
            raise OSError(errno.EXDEV, "store file outside the guest")
        return guest

    def _adopt(self, sc: Syscall, old: str, st: os.stat_result) -> tuple[str, str]:
        """Move `old` into a store, leave a symlink in its place: (store file, symlink
        target). The root store first; where it cannot be used, beside `old`."""
        ident = f"{st.st_ino:x}-{secrets.token_hex(6)}"
        store, target = os.path.join(self.store_host, ident), f"{STORE}/{ident}"
        try:
            if not self.root_store:
                raise OSError(errno.EPERM, "no store in the host's root")
            os.makedirs(self.store_host, mode=0o755, exist_ok=True)
            os.rename(old, store)
        except OSError as e:
            if e.errno not in _NO_ROOT_STORE:
                raise
            store = os.path.join(os.path.dirname(old), SIBLING + ident)
            target = self._guest_target(sc, os.path.dirname(old)).rstrip("/") + "/" + SIBLING + ident
            os.rename(old, store)
            self._mark_elsewhere()
        try:
            os.symlink(target, old)
        except OSError:
            os.rename(store, old)
            raise
        self.inodes[(st.st_dev, st.st_ino)] = store
        self.engine.host_renamed(old, store)
        return store, target

    def _mark_elsewhere(self) -> None:
        """Later runs must look for store files everywhere: say so in the root store."""
        if not self.anywhere and self.root_store:
            self.anywhere = True
            try:
                os.makedirs(self.store_host, mode=0o755, exist_ok=True)
                os.close(os.open(os.path.join(self.store_host, ELSEWHERE), os.O_CREAT | os.O_WRONLY, 0o644))
            except OSError:
                pass  # no root store at all: attach finds it unwritable and looks anyway

    def _unlink(self, tracee: Tracee, sc: Syscall) -> None:
        path_arg, flags_arg = _UNLINKS[sc.name]
        if flags_arg is not None and sc.args[flags_arg] & AT_REMOVEDIR:
            return
        host = sc.host_paths.get(path_arg)
        if not host:
            return
        store = self._store_of(tracee, host)
        if store is None:
            return
        self._as_root(tracee, host)
        try:
            os.unlink(host)
        except OSError as e:
            sc.skip(-(e.errno or errno.EIO))
            return
        self._drop(store)
        self._invalidate(host)
        sc.skip(0)

    def _rename(self, tracee: Tracee, sc: Syscall) -> None:
        old_arg, new_arg, flags_arg = _RENAMES[sc.name]
        if flags_arg is not None and sc.args[flags_arg] & RENAME_EXCHANGE:
            return
        old, new = sc.host_paths.get(old_arg), sc.host_paths.get(new_arg)
        if not old or not new:
            return
        replaced = self._store_of(tracee, new)
        if replaced is None:
            return
        if self._store_of(tracee, old) == replaced:
            sc.skip(0)  # rename(2): two links to the same file: nothing happens
            return
        tracee.data["l2s.replaced"] = (sc, replaced)
        sc.want_exit()
