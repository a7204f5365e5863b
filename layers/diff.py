"""A container's changes against its image, as layer entries (`layers.layerwrite.Entry`).

`diff_tree` walks the container tree (`upper`) beside the image tree it was made
from (`lower`) and lists, in layer order (parents first, names sorted):
- added and changed entries, with the owner and mode the guest sees (from
  `Owners`, never the builder's real uid), mtimes, xattrs, symlink targets;
  files that share an inode within the change are written once and hardlinked;
- whiteouts for what was deleted, and an opaque marker instead when nothing of
  a directory's lower content is left (the directory was emptied or replaced);
- the parent directories of every change (tar readers expect them).

A directory the fake root has no record for keeps the image's owner: its owner on
disk is whoever materialised it. A file still hardlinked to the image's file at the same path is unchanged
without reading it; anything else is compared by type, guest metadata, size,
mtime and, when all of those agree, content. A container directory that is
still a lazy placeholder (`ocirun.engine.cow`) for its own image directory is
unchanged as a whole; a placeholder moved elsewhere is materialised and walked.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from layers.layerwrite import Entry

LAZY_XATTR = "user.ocirun.lazy"  # ocirun.engine.cow's placeholder mark
# Files the runner writes into every container (docker bind-mounts them): never committed.
RUNNER_FILES = frozenset({"etc/hosts", "etc/hostname", "etc/resolv.conf"})
_PRIVATE_PREFIXES = (".ocirun-copyup.", ".ocirun-")
_KEEP_XATTRS = ("user.", "security.capability", "trusted.")
_CMP_CHUNK = 1 << 20


class LazyTree(Protocol):
    """A container tree with lazy placeholders (ocirun.engine.cow.ContainerTree)."""

    marks: Any  # .get(host_dir) -> the placeholder's mark or None

    def ensure(self, host_dir: str) -> bool: ...


class RecordSource(Protocol):
    """The fake-root database's read side (ocirun.engine.extensions.fake_id0.fakeroot_db.FakeRootDB)."""

    def get(self, dev: int, ino: int) -> Any: ...


@dataclass
class Owners:
    """What the guest sees of a file's owner and mode.

    In order: a fake-root record for the inode (`db`); an unpacker's ownership
    record for the path (`by_path`: owners the store could not apply on disk);
    else the disk, with the real user's files shown as `file_owner` (root), as
    the runner's fake root shows them.
    """

    db: RecordSource | None = None
    by_path: dict[str, dict] = field(default_factory=dict)
    file_owner: tuple[int, int] = (0, 0)
    real: tuple[int, int] = field(default_factory=lambda: (os.getuid(), os.getgid()))

    @classmethod
    def for_image(cls, image_root: str | os.PathLike[str]) -> Owners:
        """The view of a stored image tree (its `ownership` file sits beside the rootfs)."""
        return cls(by_path=read_ownership(Path(image_root).parent / "ownership"))

    def of(self, rel: str, st: os.stat_result) -> tuple[int, int, int, tuple[int, int] | None]:
        """(uid, gid, st_mode, device numbers or None) as the guest sees `rel`."""
        uid = self.file_owner[0] if st.st_uid == self.real[0] else st.st_uid
        gid = self.file_owner[1] if st.st_gid == self.real[1] else st.st_gid
        mode, rdev = st.st_mode, None
        rec = self.db.get(st.st_dev, st.st_ino) if self.db is not None else None
        if rec is not None:
            uid = rec.uid if rec.uid is not None else uid
            gid = rec.gid if rec.gid is not None else gid
            mode = rec.mode if rec.mode is not None else mode
            if rec.rdev is not None:
                rdev = (os.major(rec.rdev), os.minor(rec.rdev))
        elif rel in self.by_path:
            e = self.by_path[rel]
            uid, gid = int(e.get("uid", uid)), int(e.get("gid", gid))
            if e.get("mode") is not None:
                mode = stat.S_IFMT(st.st_mode) | (int(e["mode"]) & 0o7777)
        return uid, gid, mode, rdev


def read_ownership(path: str | os.PathLike[str]) -> dict[str, dict]:
    """The entries of an image's `ownership` file (layers.unpack), {} when absent."""
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    entries = doc.get("entries") if isinstance(doc, dict) else None
    return {k.strip("/"): v for k, v in entries.items() if isinstance(v, dict)} if isinstance(entries, dict) else {}


def _lstat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None


def _xattrs(path: str) -> dict[str, bytes]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    out = {}
    for n in names:
        if n == LAZY_XATTR or n.startswith("user.ocirun.") or not n.startswith(_KEEP_XATTRS):
            continue
        with contextlib.suppress(OSError):
            out[n] = os.getxattr(path, n, follow_symlinks=False)
    return out


def _same_content(a: str, b: str) -> bool:
    try:
        with open(a, "rb") as fa, open(b, "rb") as fb:
            while True:
                ca, cb = fa.read(_CMP_CHUNK), fb.read(_CMP_CHUNK)
                if ca != cb:
                    return False
                if not ca:
                    return True
    except OSError:
        return False


@dataclass
class Differ:
    """One walk of `upper` against `lower` (None: everything in upper is new)."""

    upper: str
    lower: str | None
    upper_owners: Owners
    lower_owners: Owners
    exclude: frozenset[str] = RUNNER_FILES
    tree: LazyTree | None = None  # the container's ocirun.engine.cow.ContainerTree
    entries: list[Entry] = field(default_factory=list)
    _links: dict[tuple[int, int], str] = field(default_factory=dict)

    def run(self) -> list[Entry]:
        root_st = os.lstat(self.upper)
        lower_st = _lstat(self.lower) if self.lower else None
        self._dir("", self.upper, root_st, self.lower if lower_st and stat.S_ISDIR(lower_st.st_mode) else None)
        return self.entries

    # -- entries ------------------------------------------------------------------

    def _entry(self, rel: str, host: str, st: os.stat_result) -> Entry:
        uid, gid, mode, rdev = self.upper_owners.of(rel, st)
        e = Entry(rel, "file", uid, gid, stat.S_IMODE(mode), int(st.st_mtime), xattrs=_xattrs(host))
        kind = stat.S_IFMT(mode)
        if rdev is not None and kind in (stat.S_IFCHR, stat.S_IFBLK):
            e.kind, e.rdev = ("char" if kind == stat.S_IFCHR else "block"), rdev
        elif stat.S_ISDIR(st.st_mode):
            e.kind = "dir"
        elif stat.S_ISLNK(st.st_mode):
            e.kind, e.link = "symlink", os.readlink(host)
        elif stat.S_ISFIFO(st.st_mode):
            e.kind = "fifo"
        elif stat.S_ISREG(st.st_mode):
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and key in self._links:
                e.kind, e.link = "hardlink", self._links[key]
            else:
                e.source, e.size = host, st.st_size
                if st.st_nlink > 1:
                    self._links[key] = rel
        else:
            return Entry(rel, "skip")  # sockets: nothing a layer can carry
        return e

    def _unchanged(self, rel: str, host: str, st: os.stat_result, low: str, lst: os.stat_result) -> bool:
        if (st.st_dev, st.st_ino) == (lst.st_dev, lst.st_ino):
            return True  # still the image's file (a hardlink of the container tree)
        if stat.S_IFMT(st.st_mode) != stat.S_IFMT(lst.st_mode):
            return False
        if self.upper_owners.of(rel, st) != self.lower_owners.of(rel, lst):
            return False
        if stat.S_ISLNK(st.st_mode):
            return os.readlink(host) == os.readlink(low)
        if stat.S_ISREG(st.st_mode):
            if st.st_size != lst.st_size or st.st_mtime_ns != lst.st_mtime_ns or st.st_nlink > 1:
                return False
            return _xattrs(host) == _xattrs(low) and _same_content(host, low)
        return True

    # -- directories ----------------------------------------------------------------

    def _is_own_placeholder(self, rel: str, host: str) -> bool | None:
        """True: a placeholder of its own image dir; False: a moved one; None: not lazy."""
        if self.tree is None:
            return None
        try:
            value = self.tree.marks.get(host)
        except OSError:
            return None
        if value is None:
            return None
        return value.decode(errors="replace").partition(":")[2].strip("/") == rel

    def _dir(self, rel: str, host: str, st: os.stat_result, low: str | None) -> bool:
        """Walk one directory; True when it or anything below it is in the layer."""
        lazy = self._is_own_placeholder(rel, host)
        if lazy and low is not None and (self.upper_owners.db is None
                                         or self.upper_owners.db.get(st.st_dev, st.st_ino) is None):
            return False
        if lazy is not None and self.tree is not None:
            self.tree.ensure(host)
            st = os.lstat(host)
        mark = len(self.entries)
        meta = self._dir_meta(rel, st, low)
        meta_changed = low is None or meta != self._dir_meta_lower(rel, low)
        names = sorted(os.listdir(host))
        lower_names = self._lower_names(low, rel)
        gone = [n for n in lower_names if n not in names]
        if gone and len(gone) == len(lower_names):
            self.entries.append(Entry(rel, "opaque"))
        else:
            for n in gone:
                self.entries.append(Entry(_join(rel, n), "whiteout"))
        for n in names:
            crel = _join(rel, n)
            if crel in self.exclude or n.startswith(_PRIVATE_PREFIXES):
                continue
            self._child(crel, os.path.join(host, n), os.path.join(low, n) if low is not None else None)
        if meta_changed or len(self.entries) > mark:
            if rel:
                e = self._entry(rel, host, st)
                e.uid, e.gid = meta[0], meta[1]
                self.entries.insert(mark, e)
            return True
        return False

    def _dir_meta(self, rel: str, st: os.stat_result, low: str | None) -> tuple:
        """The directory's guest owner and mode (see the module docstring for the fallback)."""
        uid, gid, mode, rdev = self.upper_owners.of(rel, st)
        db = self.upper_owners.db
        if low is not None and (db is None or db.get(st.st_dev, st.st_ino) is None) \
                and (st.st_uid, st.st_gid) == self.upper_owners.real:
            uid, gid = self.lower_owners.of(rel, os.lstat(low))[:2]
        return uid, gid, mode, rdev

    def _dir_meta_lower(self, rel: str, low: str) -> tuple:
        return self.lower_owners.of(rel, os.lstat(low))

    def _lower_names(self, low: str | None, rel: str) -> list[str]:
        if low is None:
            return []
        try:
            names = os.listdir(low)
        except OSError:
            return []
        return sorted(n for n in names if _join(rel, n) not in self.exclude)

    def _child(self, rel: str, host: str, low: str | None) -> None:
        st = os.lstat(host)
        lst = _lstat(low) if low is not None else None
        if stat.S_ISDIR(st.st_mode):
            lower_dir = low if lst is not None and stat.S_ISDIR(lst.st_mode) else None
            self._dir(rel, host, st, lower_dir)
            return
        if lst is not None and self._unchanged(rel, host, st, low, lst):
            return
        if lst is not None and stat.S_ISDIR(lst.st_mode):
            self.entries.append(Entry(rel, "whiteout"))  # a directory replaced by a non-directory
        e = self._entry(rel, host, st)
        if e.kind != "skip":
            self.entries.append(e)


def _join(parent: str, name: str) -> str:
    return f"{parent}/{name}" if parent else name


def diff_tree(
    upper: str | os.PathLike[str],
    lower: str | os.PathLike[str] | None,
    upper_owners: Owners,
    lower_owners: Owners | None = None,
    exclude: Iterable[str] = RUNNER_FILES,
    tree: LazyTree | None = None,
) -> list[Entry]:
    """The entries of a layer that turns `lower` into `upper` (see the module docstring)."""
    d = Differ(
        os.fspath(upper),
        os.fspath(lower) if lower is not None else None,
        upper_owners,
        lower_owners or Owners(),
        frozenset(exclude),
        tree,
    )
    return d.run()


def container_changes(image_root: str | os.PathLike[str], rootfs: str | os.PathLike[str],
                      state_dir: str | os.PathLike[str]) -> list[Entry]:
    """The changes of a runner container (`ocirun.run.containers.Container`: its
    image_root, rootfs and directory, where the fake-root database lives)."""
    from ocirun.engine.cow import ContainerTree
    from ocirun.engine.extensions.fake_id0.fakeroot_db import FakeRootDB

    image_root, rootfs = os.fspath(image_root), os.fspath(rootfs)
    image_owners = Owners.for_image(image_root)
    db_path = os.path.join(os.fspath(state_dir), "fakeroot.db")
    db = FakeRootDB(db_path, rootfs) if os.path.exists(db_path) else None
    try:
        upper = Owners(db=db)  # what the guest saw: the fake root shows no more than this
        exclude = set(RUNNER_FILES)
        if not os.path.lexists(os.path.join(image_root, "tmp")):
            exclude.add("tmp")  # the runner's own /tmp for an image that has none
        tree = ContainerTree(image_root, rootfs)
        return diff_tree(tree.root, image_root, upper, image_owners, exclude, tree)
    finally:
        if db is not None:
            db.close()
