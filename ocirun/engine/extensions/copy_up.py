"""Copy-up for the runner's containers (the tree: ocirun/engine/cow.py): a file
shared with the image is copied up before any change to it, and writes under
read-only bindings (`-v a:b:ro`) fail with EROFS.

Registered first among the extensions, so the fake-root database and the others
see the container's private inode. Declares shares_inodes: other extensions never
change a multiply-linked regular file in place.
"""

from __future__ import annotations

import errno
import os
import stat
import struct
import time

from ocirun.engine.cow import ContainerTree, ContainerView, copy_up, unreadable_shared
from ocirun.engine.extension import Extension
from ocirun.util.linux import O_ACCMODE, O_CREAT, O_TRUNC

TYPE_CHECKING = False  # typing's, without importing typing (start-up time)
if TYPE_CHECKING:
    from ocirun.engine.path.fsview import FsView
    from ocirun.engine.syscall import Syscall
    from ocirun.engine.tracee import Tracee


# syscall name -> register index of the path whose file it may change
_PATH_WRITES: dict[str, int] = {
    "creat": 0,
    "truncate": 0,
    "chmod": 0,
    "fchmodat": 1,
    "fchmodat2": 1,
    "chown": 0,
    "lchown": 0,
    "fchownat": 1,
    "utime": 0,
    "utimes": 0,
    "futimesat": 1,
    "utimensat": 1,
    "setxattr": 0,
    "lsetxattr": 0,
    "removexattr": 0,
    "lremovexattr": 0,
    "setxattrat": 1,
    "removexattrat": 1,
    "link": 0,
    "linkat": 1,
}
# open-like syscalls: name -> (path register, flags register)
_OPENS: dict[str, tuple[int, int]] = {"open": (0, 1), "openat": (1, 2)}
# fd-based changes: name -> fd register
_FD_WRITES: dict[str, int] = {"fchmod": 0, "fchown": 0, "fsetxattr": 0, "fremovexattr": 0}


# namespace changes: name -> path registers they create, remove or rename (for :ro bindings)
_NAMESPACE: dict[str, tuple[int, ...]] = {
    "mkdir": (0,), "mkdirat": (1,), "rmdir": (0,), "unlink": (0,), "unlinkat": (1,),
    "rename": (0, 1), "renameat": (1, 3), "renameat2": (1, 3), "link": (1,), "linkat": (3,),
    "symlink": (1,), "symlinkat": (2,), "mknod": (0,), "mknodat": (1,),
}


def _open_flags(tracee: Tracee, sc: Syscall) -> int | None:
    if sc.name in _OPENS:
        return sc.args[_OPENS[sc.name][1]]
    if sc.name == "openat2":
        try:
            return tracee.read_u64(sc.orig_args[2])
        except OSError:
            return None
    if sc.name == "creat":
        return O_CREAT | 1 | O_TRUNC
    return None


class CopyUp(Extension):
    """Engine extension: copy a file shared with the image up before any change to it,
    and make writes under read-only bindings (`-v a:b:ro`) fail with EROFS.

    Registered first among the extensions, so the fake-root database and the
    others see the container's private inode.
    """

    name = "copy-up"
    shares_inodes = True
    syscalls = frozenset(_FD_WRITES) | frozenset(("utimensat", "rename", "renameat", "renameat2"))

    def __init__(self, tree: ContainerTree | None, readonly: list[str] | None = None):
        self.tree = tree
        self.view: ContainerView | None = None
        self.readonly = [os.path.realpath(p) for p in readonly or ()]

    def materialise(self, host_dir: str) -> bool | None:
        return None if self.tree is None else self.tree.ensure(host_dir)

    def wrap_fs(self, fs: FsView) -> FsView:
        """The guest's path resolution materialises container directories before it looks."""
        if self.tree is None:
            return fs
        self.view = ContainerView(fs, self.tree)
        return self.view

    def _is_readonly(self, host: str) -> bool:
        if host.startswith("/proc/"):
            try:
                host = os.readlink(host)
            except OSError:
                return False
        for ro in self.readonly:
            if host == ro or host.startswith(ro + "/"):
                return True
        return False

    def _writes(self, tracee: Tracee, sc: Syscall) -> list[tuple[int, str]]:
        """(register, host path) of each file this syscall would change."""
        name = sc.name
        reg = _PATH_WRITES.get(name)
        if reg is not None:
            host = sc.host_paths.get(reg)
            return [(reg, host)] if host else []
        flags = _open_flags(tracee, sc)
        if flags is not None:
            reg = 0 if name in ("open", "creat") else 1
            host = sc.host_paths.get(reg)
            if host and (flags & O_ACCMODE or flags & O_TRUNC):
                return [(reg, host)]
            if host and flags & O_CREAT and self.readonly and not os.path.lexists(host):
                return [(-1, host)]  # a creation: only :ro bindings care
            if host and self.tree is not None and unreadable_shared(host):
                return [(reg, host)]  # the fake root would widen the image's mode: copy first
            return []
        regs = _NAMESPACE.get(name)
        if regs and self.readonly:
            return [(-1, sc.host_paths[r]) for r in regs if sc.host_paths.get(r)]
        return []

    def on_enter(self, tracee: Tracee, sc: Syscall) -> None:
        if sc.skipped:
            return
        name = sc.name
        if name in _FD_WRITES or (name in ("utimensat", "fchownat", "fchmodat2") and sc.host_paths.get(1) is None):
            self._fd_change(tracee, sc, sc.arg_int(0))
            return
        writes = self._writes(tracee, sc)
        if self.readonly and any(self._is_readonly(h) for _, h in writes):
            sc.skip(-errno.EROFS)
            return
        if self.tree is not None:
            for reg, host in writes:
                if reg >= 0:
                    self._path_write(sc, reg, host)
        if name in ("rename", "renameat", "renameat2") and self.tree is not None:
            src = sc.host_paths.get(0 if name == "rename" else 1)
            dst = sc.host_paths.get(1 if name == "rename" else 3)
            if src is not None:
                self.tree.ensure(src)  # a moved directory is materialised first
            if dst is not None and self.view is not None:
                self.view.forget(dst)

    def _fd_change(self, tracee: Tracee, sc: Syscall, fd: int) -> None:
        """fchmod & co. on an fd of the image's inode: copy up, do it on the copy, skip the syscall."""
        if fd < 0:
            return
        magic = f"/proc/{tracee.pid}/fd/{fd}"
        if self.readonly and self._is_readonly(magic):
            sc.skip(-errno.EROFS)
            return
        target = self._private_target(magic)
        if target is None:
            return
        result = _emulate(sc, target)
        if result is not None and result != -errno.EPERM:
            sc.skip(result)

    def _path_write(self, sc: Syscall, reg: int, host: str) -> None:
        """Copy up the file a path syscall is about to change.

        A /proc/PID/fd/N (or .../exe, ...) magic link names an open inode, not a
        path: the kernel would follow it to the image's inode even after a
        copy-up. So the container path behind it is copied up and the argument
        is pointed at that path.
        """
        if host.startswith("/proc/"):
            target = self._private_target(host)
            if target is not None:
                sc.set_arg(reg, sc.push_string(target))
                sc.host_paths[reg] = target  # the later extensions act on the copy too
            return
        copy_up(host)

    def _private_target(self, magic: str) -> str | None:
        """The container path to change instead of the image inode a magic link/fd names."""
        try:
            st = os.stat(magic)
            target = os.readlink(magic)
        except OSError:
            return None
        if not stat.S_ISREG(st.st_mode):
            return None
        if target.endswith(" (deleted)"):
            target = target[: -len(" (deleted)")]
        root = self.tree.root + "/"
        if not target.startswith(root):
            return None
        if st.st_nlink <= 1:
            try:
                ist = os.lstat(os.path.join(self.tree.image_root, target[len(root):]))
            except OSError:
                return None
            if (ist.st_dev, ist.st_ino) != (st.st_dev, st.st_ino):
                return None  # a private inode: let the kernel change it
        copy_up(target)
        try:
            cur = os.lstat(target)
        except OSError:
            return None
        if (cur.st_dev, cur.st_ino) == (st.st_dev, st.st_ino) or not stat.S_ISREG(cur.st_mode):
            return None
        return target


def _emulate(sc: Syscall, host: str) -> int | None:
    """Apply an fd-based change to the copied-up path; the syscall's result, or None."""
    tracee = sc.tracee
    try:
        if sc.name == "fchmod":
            os.chmod(host, sc.args[1] & 0o7777)
        elif sc.name == "fchown" or sc.name == "fchownat":
            base = 1 if sc.name == "fchown" else 2
            uid, gid = sc.args[base] & 0xFFFFFFFF, sc.args[base + 1] & 0xFFFFFFFF
            os.chown(host, -1 if uid == 0xFFFFFFFF else uid, -1 if gid == 0xFFFFFFFF else gid, follow_symlinks=False)
        elif sc.name == "fchmodat2":
            os.chmod(host, sc.args[2] & 0o7777)
        elif sc.name == "fsetxattr":
            attr = tracee.read_string(sc.args[1])
            value = tracee.read(sc.args[2], sc.args[3]) if sc.args[3] else b""
            os.setxattr(host, attr, value, sc.args[4] & 0xFFFFFFFF)
        elif sc.name == "fremovexattr":
            os.removexattr(host, tracee.read_string(sc.args[1]))
        elif sc.name == "utimensat":
            return _emulate_utimensat(tracee, sc, host)
        else:
            return None
    except OSError as exc:
        return -(exc.errno or errno.EIO)
    return 0


_UTIME_NOW = (1 << 30) - 1
_UTIME_OMIT = (1 << 30) - 2


def _emulate_utimensat(tracee: Tracee, sc: Syscall, host: str) -> int | None:
    ptr = sc.args[2]
    st = os.stat(host)
    now = time.time_ns()
    if not ptr:
        times = (now, now)
    else:
        a_s, a_ns, m_s, m_ns = struct.unpack("<qqqq", tracee.read(ptr, 32))

        def pick(sec: int, nsec: int, old: int) -> int:
            if nsec == _UTIME_NOW:
                return now
            if nsec == _UTIME_OMIT:
                return old
            return sec * 1_000_000_000 + nsec
        times = (pick(a_s, a_ns, st.st_atime_ns), pick(m_s, m_ns, st.st_mtime_ns))
    os.utime(host, ns=times)
    return 0
