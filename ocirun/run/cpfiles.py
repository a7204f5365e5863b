"""`ocirun cp`: files between a container and the host, with docker's rules.

A container tree is lazy (ocirun.engine.cow): a directory may still be a
placeholder for its image directory. Every container directory is materialised
(`ContainerTree.ensure`) before it is listed or written into, so what is read is
what the guest sees, and a write never reaches the image: files are written under
a temporary name and renamed over what was there, which replaces a link to the
image's inode instead of changing it. Paths inside the container are resolved as
the guest would (symlinks stay inside the root; `..` stops at it); a path under a
volume (`-v`) is the volume's host path, as docker copies from volumes too.

docker's rules (SRC/DEST as written, a trailing `/` or `/.` matters):
- a file onto a missing DEST makes that file (a DEST ending in `/` must exist),
  onto a file replaces it, onto a directory goes inside it;
- a directory onto a missing DEST becomes DEST; into an existing directory it is
  copied inside, or only its content when SRC ends with `/.`; onto a file: error.
Copied files keep their modes and mtimes; they belong to the user running
`ocirun cp` on the host, and to root in the container (as docker's without -a).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from layers.diff import Owners, read_ownership
from ocirun.errors import OcirunError
from ocirun.run.containers import Container
from ocirun.util.fs import writable_dir

_MAX_LINKS = 40
_PRIVATE = ".ocirun-"  # the runner's own files in a container tree (copy-up temporaries, lazy marks)

Ensure = Callable[[str], object]


@dataclass
class Side:
    """One end of a copy: a host path and how to prepare a directory before using it."""

    path: str  # host path (may not exist)
    ensure: Ensure  # materialise a container directory; a no-op on the host
    trailing_dot: bool = False  # written as `DIR/.`
    trailing_slash: bool = False  # written as `DIR/`
    # -a: give each entry written here the owner of its source, (dst, src, src's lstat)
    own: Callable[[str, str, os.stat_result], None] | None = None


def _nothing(_path: str) -> None:
    return None


def _split(text: str) -> tuple[bool, bool]:
    """(ends with `/.`, ends with `/`) as docker tells them apart."""
    dot = text == "." or text.endswith("/.")
    return dot, text.endswith("/") or dot


def _volume(c: Container, guest: str) -> tuple[str, str] | None:
    """(host dir, path below it) when `guest` is under one of the container's volumes."""
    norm = os.path.normpath("/" + guest.lstrip("/"))  # (POSIX keeps a leading //)
    best = None
    for v in c.plan.volumes:
        g = os.path.normpath(v.guest)
        if (norm == g or norm.startswith(g.rstrip("/") + "/")) and (best is None or len(g) > len(best[1])):
            best = (v.host, g)
    if best is None:
        return None
    return best[0], norm[len(best[1]):].lstrip("/")


def resolve(c: Container, guest: str, follow_last: bool) -> Side:
    """The host path of the container path `guest` (symlinks resolved inside the root)."""
    dot, slash = _split(guest)
    tree = c.tree()
    vol = _volume(c, guest)
    if vol is not None:
        path = os.path.join(vol[0], vol[1]) if vol[1] else vol[0]
        return Side(path, _nothing, dot, slash)
    root = tree.root
    parts = [p for p in guest.split("/") if p not in ("", ".")]
    dot = dot or not parts  # the root itself: its content
    current, links = root, 0
    while parts:
        tree.ensure(current)
        name = parts.pop(0)
        if name == "..":
            current = os.path.dirname(current) if current != root else root
            continue
        nxt = os.path.join(current, name)
        if os.path.islink(nxt) and (parts or follow_last or slash):
            links += 1
            if links > _MAX_LINKS:
                raise OcirunError(f"{guest}: too many levels of symbolic links")
            target = os.readlink(nxt)
            current = root if target.startswith("/") else current
            parts = [p for p in target.split("/") if p not in ("", ".")] + parts
            continue
        current = nxt
    return Side(current, tree.ensure, dot, slash)


def host_side(path: str) -> Side:
    dot, slash = _split(path)
    return Side(os.path.abspath(path), _nothing, dot, slash)


# -- the copy --------------------------------------------------------------------------------


@contextlib.contextmanager
def _writable(parent: str) -> Iterator[None]:
    """Create entries in a directory of ours even when its mode (0555) forbids it."""
    try:
        ctx = writable_dir(parent)
    except FileNotFoundError:
        raise OcirunError(f"{parent}: no such directory") from None
    with ctx:
        yield


def _copy_file(src: str, dst: str, st: os.stat_result) -> int:
    """A new inode at `dst` with src's bytes, mode and mtime (renamed over what was there)."""
    parent, name = os.path.split(dst)
    tmp = os.path.join(parent, f"{_PRIVATE}cp.{os.getpid()}.{name}"[:255])
    with _writable(parent):
        try:
            with open(src, "rb") as fin, open(tmp, "xb") as fout:
                shutil.copyfileobj(fin, fout, 1 << 20)
            os.chmod(tmp, stat.S_IMODE(st.st_mode))
            os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
            os.replace(tmp, dst)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
    return st.st_size


def _replace_with(dst: str, make: Callable[[str], None]) -> None:
    """Make a symlink or fifo at `dst` (a temporary name first, then renamed over)."""
    parent, name = os.path.split(dst)
    tmp = os.path.join(parent, f"{_PRIVATE}cp.{os.getpid()}.{name}"[:255])
    with _writable(parent):
        make(tmp)
        os.replace(tmp, dst)


def _mkdir(dst: str, dst_ensure: Ensure) -> None:
    st = _lstat(dst)
    if st is None:
        with _writable(os.path.dirname(dst)):
            os.mkdir(dst, 0o700)
    elif not stat.S_ISDIR(st.st_mode):
        raise OcirunError(f"cannot overwrite non-directory {dst} with a directory")
    else:
        dst_ensure(dst)


def copy_tree(src: str, dst: str, src_side: Side, dst_side: Side) -> int:
    """Copy `src` (any kind) to exactly `dst`; returns the bytes of file data copied."""
    total = _copy_entry(src, dst, src_side, dst_side)
    if dst_side.own is not None and _lstat(dst) is not None:
        dst_side.own(dst, src, os.lstat(src))
    return total


def _copy_entry(src: str, dst: str, src_side: Side, dst_side: Side) -> int:
    src_ensure, dst_ensure = src_side.ensure, dst_side.ensure
    st = _lstat(src)
    if st is None:
        raise OcirunError(f"{src}: no such file or directory")
    if stat.S_ISDIR(st.st_mode):
        src_ensure(src)
        st = os.lstat(src)  # a placeholder's mode is not the directory's
        _mkdir(dst, dst_ensure)
        total = 0
        for name in sorted(os.listdir(src)):
            if not name.startswith(_PRIVATE):
                total += copy_tree(os.path.join(src, name), os.path.join(dst, name), src_side, dst_side)
        os.chmod(dst, stat.S_IMODE(st.st_mode))
        os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))
        return total
    old = _lstat(dst)
    if old is not None and stat.S_ISDIR(old.st_mode):
        raise OcirunError(f"cannot overwrite directory {dst} with non-directory")
    if stat.S_ISREG(st.st_mode):
        return _copy_file(src, dst, st)
    if stat.S_ISLNK(st.st_mode):
        target = os.readlink(src)
        _replace_with(dst, lambda p: os.symlink(target, p))
    elif stat.S_ISFIFO(st.st_mode):
        _replace_with(dst, lambda p: os.mkfifo(p, stat.S_IMODE(st.st_mode)))
    # sockets and device nodes: not reproducible without privileges, skipped (docker's need root too)
    return 0


def _lstat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None


def copy(src: Side, dst: Side, what: str) -> tuple[int, str]:
    """docker cp's rules (module docstring); returns (bytes copied, the path written)."""
    st = _lstat(src.path)
    if st is None:
        raise OcirunError(f"Could not find the file {what}")
    if src.trailing_slash and not stat.S_ISDIR(st.st_mode):
        raise OcirunError(f"{what}: not a directory")
    dst.ensure(os.path.dirname(dst.path))
    dst_st = _lstat(dst.path)
    if dst_st is not None and stat.S_ISDIR(dst_st.st_mode):
        dst.ensure(dst.path)
    if not stat.S_ISDIR(st.st_mode):
        if dst_st is None and dst.trailing_slash:
            raise OcirunError(f"destination directory {dst.path} does not exist")
        target = dst.path
        if dst_st is not None and stat.S_ISDIR(dst_st.st_mode):
            target = os.path.join(dst.path, os.path.basename(src.path))
        elif not os.path.isdir(os.path.dirname(target)):
            raise OcirunError(f"destination directory {os.path.dirname(target)} does not exist")
        return copy_tree(src.path, target, src, dst), target
    if dst_st is not None and not stat.S_ISDIR(dst_st.st_mode):
        raise OcirunError(f"cannot copy a directory to a file: {dst.path}")
    if dst_st is None:
        if not os.path.isdir(os.path.dirname(dst.path)):
            raise OcirunError(f"destination directory {os.path.dirname(dst.path)} does not exist")
        return copy_tree(src.path, dst.path, src, dst), dst.path
    if src.trailing_dot:  # the content of SRC into DEST
        total = 0
        src.ensure(src.path)
        for name in sorted(os.listdir(src.path)):
            if not name.startswith(_PRIVATE):
                total += copy_tree(os.path.join(src.path, name), os.path.join(dst.path, name), src, dst)
        return total, dst.path
    target = os.path.join(dst.path, os.path.basename(src.path.rstrip("/")))
    return copy_tree(src.path, target, src, dst), target


@contextlib.contextmanager
def guest_owners(c: Container):
    """Owners as the guest sees them in this container."""
    from ocirun.engine.extensions.fake_id0.fakeroot_db import FakeRootDB

    db_path = c.path / "fakeroot.db"
    db = FakeRootDB(str(db_path), str(c.rootfs)) if db_path.exists() else None
    try:
        yield Owners(db=db, by_path=read_ownership(Path(c.image_root).parent / "ownership"))
    finally:
        if db is not None:
            db.close()


def copy_out(c: Container, guest: str, dest: str, follow: bool, archive: bool = False) -> tuple[int, str]:
    """CONTAINER:SRC -> DEST on the host; `archive` (-a): the guest's owners, chowned (root only)."""
    src = resolve(c, guest, follow)
    dst = host_side(dest)
    if not archive:
        return copy(src, dst, f"{guest} in container {c.name}")
    if os.geteuid() != 0:
        raise OcirunError("cp -a out of a container needs root: its files would belong to other users here")
    root = c.tree().root
    with guest_owners(c) as owners:
        def own(dst_path: str, src_path: str, st: os.stat_result) -> None:
            if src_path == root or src_path.startswith(root + "/"):
                uid, gid, _mode, _rdev = owners.of(os.path.relpath(src_path, root), st)
                os.lchown(dst_path, uid, gid)

        dst.own = own
        return copy(src, dst, f"{guest} in container {c.name}")


def copy_in(c: Container, src: str, guest: str, follow: bool, archive: bool = False) -> tuple[int, str]:
    """SRC on the host -> CONTAINER:DEST (the destination's symlinks are followed, as docker);
    `archive` (-a): entries keep their source's uid/gid (on disk as root, else in the
    container's fake-root records)."""
    side = host_side(src)
    if follow and os.path.islink(side.path):
        side.path = os.path.realpath(side.path)
    dst = resolve(c, guest, True)
    if not archive:
        return copy(side, dst, src)
    if os.geteuid() == 0:
        dst.own = lambda d, _s, st: os.lchown(d, st.st_uid, st.st_gid)
        return copy(side, dst, src)
    from ocirun.engine.extensions.fake_id0.fakeroot_db import FakeRootDB

    db = FakeRootDB(str(c.path / "fakeroot.db"), str(c.rootfs))
    try:
        dst.own = lambda d, _s, st: db.set_owner(os.lstat(d), d, st.st_uid, st.st_gid)
        return copy(side, dst, src)
    finally:
        db.close()
