"""Cheap containers: a lazily materialised hardlink tree plus copy-up before writes.

Design (the runner's; see the README's runner section):
- A container tree starts as one directory. A directory of the container is
  *materialised* the first time the path resolver looks into it or stats it:
  its image directory is listed once, files become hardlinks to the image's
  files, symlinks are copied, fifos re-made, and subdirectories are created as
  empty *placeholders* that carry a mark naming their image directory and final
  mode: an xattr (`user.ocirun.lazy`), or a marker file inside the placeholder
  on filesystems that refuse user xattrs (see `lazymarks`). The mark travels
  with a renamed placeholder, so laziness survives any rename. Creating a
  container therefore costs one directory listing, whatever the image's size.
- `ContainerView` wraps the resolver's `FsView`: before a lookup of `dir/name`
  it materialises `dir`, and a directory it reports is materialised before the
  guest can list it. The resolver routes every host query through the view, so
  the guest never sees a placeholder's empty state.
- A file still shared with the image (regular file, link count > 1) is copied
  up (copied to a private inode, renamed over the link) before anything could
  change it: open for writing or truncating, truncate, chmod, chown, utimes,
  xattr changes, link. The copy-up engine extension
  (ocirun/engine/extensions/copy_up.py) does that at syscall entry, on the
  host path the core just translated. fd-based changes
  (fchmod, fchown, fsetxattr, futimens on an fd of a shared file) are done by
  the tracer on the copied-up path and the syscall is skipped with the result.
- A write through a /proc/PID/fd/N magic link, or an fd-based change on an
  fd opened before the copy-up, would reach the image's inode: the extension
  resolves the link / fd, copies the container path up and points the syscall
  (or the tracer's emulation) at the copy.
- A shared file its owner cannot read (mode 0000 files) is copied up before
  the fake root reads it, because the fake root would widen its mode in place.
- The same extension makes writes under read-only bindings (`-v a:b:ro`) fail
  with EROFS, since it already classifies every write.
- Consequence: a hardlink the guest itself made is split on the first write
  (it looks shared). Documented; rare in practice.

Concurrent ocirun processes on one container (`exec`) take a flock on the
directory being materialised or copied into, and re-check under the lock.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

from ocirun.engine.lazymarks import LAZY_XATTR, LazyMarks, marks_for
from ocirun.util.fs import writable_dir

_S_IFMT = 0o170000
_IS_ROOT = os.geteuid() == 0


@contextlib.contextmanager
def _dir_lock(path: str) -> Iterator[int]:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield fd
    finally:
        os.close(fd)


def _lazy_value(mode: int, rel: str) -> bytes:
    return f"{stat.S_IMODE(mode):o}:{rel}".encode()


def _parse_lazy(value: bytes) -> tuple[int, str]:
    mode, _, rel = value.decode().partition(":")
    return int(mode, 8), rel


class ContainerTree:
    """A container's root filesystem backed by an image tree."""

    def __init__(self, image_root: str | Path, root: str | Path):
        self.image_root = os.path.realpath(image_root)
        # realpath'd as the path translator does, so host paths compare equal
        root = os.path.abspath(root)
        self.root = os.path.join(os.path.realpath(os.path.dirname(root)), os.path.basename(root))
        self._marks: LazyMarks | None = None

    @property
    def marks(self) -> LazyMarks:
        """How placeholders are marked here: decided by the tree's filesystem, once."""
        if self._marks is None:
            self._marks = marks_for(self.root)
        return self._marks

    def create(self) -> None:
        """Make the empty tree and materialise its top directory (one listing)."""
        st = os.stat(self.image_root)
        os.makedirs(os.path.dirname(self.root), exist_ok=True)
        os.mkdir(self.root, 0o700)
        self._marks = None  # decided by the new directory's filesystem, not by its absence
        self.marks.put(self.root, _lazy_value(st.st_mode, ""))
        self.ensure(self.root)

    def is_lazy(self, host_dir: str) -> bool:
        try:
            return self.marks.get(host_dir) is not None
        except OSError:
            return False

    def ensure(self, host_dir: str) -> bool:
        """Materialise `host_dir` if it is a placeholder. True if it is a materialised directory."""
        try:
            if self.marks.get(host_dir) is None:
                return True
        except OSError:
            return False  # missing, no permission: nothing to do
        with _dir_lock(host_dir):
            value = self.marks.get(host_dir)
            if value is None:
                return True  # another process did it while we waited
            mode, rel = _parse_lazy(value)
            self._fill(host_dir, rel)
            self.marks.clear(host_dir)
            os.chmod(host_dir, mode)
            with contextlib.suppress(OSError):
                st = os.lstat(os.path.join(self.image_root, rel))
                os.utime(host_dir, ns=(st.st_atime_ns, st.st_mtime_ns))
        return True

    def _fill(self, host_dir: str, rel: str) -> None:
        """Create every entry of the image directory `rel` in `host_dir` (skip existing ones)."""
        src_dir = os.path.join(self.image_root, rel)
        try:
            entries = list(os.scandir(src_dir))
        except (FileNotFoundError, NotADirectoryError):
            return
        for entry in entries:
            dst = os.path.join(host_dir, entry.name)
            try:
                # d_type answers these without a stat: one or two syscalls per entry
                if entry.is_file(follow_symlinks=False):
                    _link_or_copy(entry.path, dst)
                elif entry.is_symlink():
                    os.symlink(os.readlink(entry.path), dst)
                elif entry.is_dir(follow_symlinks=False):
                    st = entry.stat(follow_symlinks=False)
                    mode = st.st_mode
                    os.mkdir(dst, 0o700)
                    if _IS_ROOT:  # keep the image's owner (a user's unpack records it instead)
                        os.lchown(dst, st.st_uid, st.st_gid)
                    self.marks.put(dst, _lazy_value(mode, os.path.join(rel, entry.name)))
                else:
                    st = entry.stat(follow_symlinks=False)
                    if stat.S_ISFIFO(st.st_mode):
                        os.mkfifo(dst, stat.S_IMODE(st.st_mode))
                    # sockets and device nodes: not reproducible without privileges, skipped
            except FileExistsError:
                continue

    def materialise_all(self) -> None:
        """Materialise the whole tree (for `export`)."""
        stack = [self.root]
        while stack:
            d = stack.pop()
            self.ensure(d)
            with os.scandir(d) as it:
                for e in it:
                    if e.is_dir(follow_symlinks=False):
                        stack.append(e.path)


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst, follow_symlinks=False)
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.EACCES):
            raise
        shutil.copy2(src, dst, follow_symlinks=False)


def unreadable_shared(host: str) -> bool:
    """A shared file its owner (us) cannot read: reading it as the fake root means a chmod."""
    try:
        st = os.lstat(host)
    except OSError:
        return False
    return st.st_mode & 0o400 == 0 and is_shared(st) and st.st_uid == os.geteuid() != 0


def is_shared(st: os.stat_result) -> bool:
    """A regular file with more than one link may be the image's: copy it before changing it."""
    return stat.S_ISREG(st.st_mode) and st.st_nlink > 1


def copy_up(host_path: str) -> bool:
    """Give `host_path` its own inode if it is shared; True if a copy was made.

    Content, mode, ownership (when permitted), times and user xattrs are kept;
    the copy is renamed over the link, so the image's inode is never opened for
    writing.
    """
    try:
        st = os.lstat(host_path)
    except OSError:
        return False
    if not is_shared(st):
        return False
    parent, name = os.path.split(host_path)
    with _dir_lock(parent), writable_dir(parent):
        st = os.lstat(host_path)
        if not is_shared(st):
            return False
        tmp = os.path.join(parent, f".ocirun-copyup.{os.getpid()}.{name}"[:255])
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        try:
            _copy_file(host_path, tmp, st)
            os.rename(tmp, host_path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    return True


def _open_source(src: str, st: os.stat_result) -> int:
    """Open a file to copy it; one its owner cannot read gets u+r for the instant of the open."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        return os.open(src, flags)
    except PermissionError:
        if st.st_uid != os.geteuid():
            raise
    os.chmod(src, stat.S_IMODE(st.st_mode) | 0o400)
    try:
        return os.open(src, flags)
    finally:
        os.chmod(src, stat.S_IMODE(st.st_mode))


def _copy_file(src: str, dst: str, st: os.stat_result) -> None:
    fd_in = _open_source(src, st)
    try:
        fd_out = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            _copy_data(fd_in, fd_out, st.st_size)
            for attr in _listxattr(fd_in):
                with contextlib.suppress(OSError):
                    os.setxattr(fd_out, attr, os.getxattr(fd_in, attr))
            with contextlib.suppress(OSError):
                os.fchown(fd_out, st.st_uid, st.st_gid)
            os.fchmod(fd_out, stat.S_IMODE(st.st_mode))
            os.utime(fd_out, ns=(st.st_atime_ns, st.st_mtime_ns))
        finally:
            os.close(fd_out)
    finally:
        os.close(fd_in)


def _copy_data(fd_in: int, fd_out: int, size: int) -> None:
    try:
        while size > 0:
            sent = os.copy_file_range(fd_in, fd_out, size)
            if sent <= 0:
                break
            size -= sent
        return
    except OSError:
        os.lseek(fd_in, 0, os.SEEK_SET)
        os.lseek(fd_out, 0, os.SEEK_SET)
        os.ftruncate(fd_out, 0)
    while chunk := os.read(fd_in, 1 << 20):
        os.write(fd_out, chunk)


def _listxattr(fd: int) -> list[str]:
    try:
        return [a for a in os.listxattr(fd) if a != LAZY_XATTR]
    except OSError:
        return []


class ContainerView:
    """FsView wrapper that materialises container directories before the resolver sees them."""

    __slots__ = ("inner", "tree", "root", "prefix", "done")

    def __init__(self, inner: object, tree: ContainerTree):
        self.inner = inner
        self.tree = tree
        self.root = tree.root
        self.prefix = tree.root + "/"
        self.done: set[str] = set()

    def _ensure(self, host_dir: str) -> None:
        if host_dir in self.done:
            return
        if self.tree.ensure(host_dir):
            self.done.add(host_dir)

    def _ensure_chain(self, host_dir: str) -> None:
        """Materialise `host_dir` and every container directory above it (top down)."""
        if host_dir in self.done:
            return
        if host_dir != self.root:
            parent = host_dir.rsplit("/", 1)[0]
            if parent.startswith(self.prefix) or parent == self.root:
                self._ensure_chain(parent)
        self._ensure(host_dir)

    def lstat_kind(self, host_path: str) -> int:
        from ocirun.engine.path.fsview import DIR

        inside = host_path.startswith(self.prefix)
        if inside:
            self._ensure_chain(host_path.rsplit("/", 1)[0])
        kind = self.inner.lstat_kind(host_path)
        if kind == DIR and (inside or host_path == self.root):
            self._ensure(host_path)
        return kind

    def readlink(self, host_path: str) -> str:
        return self.inner.readlink(host_path)

    def forget(self, host_path: str) -> None:
        """Drop cached knowledge of `host_path` and below (after a rename or rmdir there)."""
        pre = host_path.rstrip("/") + "/"
        self.done = {d for d in self.done if d != host_path and not d.startswith(pre)}


