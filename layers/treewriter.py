"""Write the entries of OCI/Docker layers into a fresh directory, as an unprivileged user.

Modelled on umoci's rootless unpacker and the OCI image-spec's layer rules, in
small steps each testable alone: `clean_name` (refuse `..` and absolute names),
`TreeWriter.resolve_dir` (walk parents inside the tree, never through a symlink
that leaves it), one method per entry type, `whiteout` / `opaque` (acting on
lower layers only), and `finish` (directory modes and mtimes last, deepest first,
so 0555 directories stay writable while later layers change them).

The tree being written is private to this process (a fresh temporary directory),
so checking a parent with lstat and then using its path has no race to lose.
"""

from __future__ import annotations

import os
import stat
import tarfile
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ocirun.errors import OcirunError
from ocirun.util.fs import COPY_CHUNK, rmtree_at, write_new_file
from registry.compression import LayerFormatError

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
MAX_SYMLINKS = 40  # as the kernel's ELOOP limit
# Small files are handed to writer threads: creating inodes is where the time goes
# (the kernel's open/create blocks on the journal), and os.open/os.write drop the GIL.
SMALL_FILE = 1 << 20
PENDING_BYTES_MAX = 64 << 20
WRITER_THREADS = int(os.environ.get("OCIRUN_UNPACK_THREADS", "2"))
_IS_ROOT = os.geteuid() == 0

# tar type -> the single-letter kind recorded for entries that were skipped.
SKIPPED_TYPES: dict[bytes, str] = {
    tarfile.CHRTYPE: "c",
    tarfile.BLKTYPE: "b",
    tarfile.FIFOTYPE: "p",
}


class UnsafeEntryError(OcirunError):
    """A layer entry would be written outside the image tree: the image is rejected."""


@dataclass
class UnpackStats:
    """What an unpack did: counts for the notice, the benchmark and meta.json."""

    layers: int = 0
    entries: int = 0
    files: int = 0
    dirs: int = 0
    symlinks: int = 0
    hardlinks: int = 0
    whiteouts: int = 0
    skipped_special: int = 0
    bytes_written: int = 0
    compressed_bytes: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def clean_name(name: str) -> str:
    """A tar member name as a tree-relative path: `./a//b/` -> `a/b`; '' is the root.

    Absolute names and `..` components are refused (GNU tar would strip them; an
    image that needs them is hostile or broken).
    """
    if name.startswith("/"):
        raise UnsafeEntryError(f"layer entry {name!r} has an absolute name")
    if "\x00" in name:
        raise UnsafeEntryError(f"layer entry {name!r} contains a NUL byte")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeEntryError(f"layer entry {name!r} has a '..' component")
    return "/".join(parts)


def _join(parent: str, name: str) -> str:
    return f"{parent}/{name}" if parent else name


def _is_under(path: str, top: str) -> bool:
    return not top or path == top or path.startswith(top + "/")


@dataclass
class TreeWriter:
    """Writes layer entries into `root` (an empty directory this process owns)."""

    root: Path
    stats: UnpackStats = field(default_factory=UnpackStats)
    # rel path -> (mode, mtime_ns) applied in finish(); '' is the root itself.
    dir_meta: dict[str, tuple[int, int]] = field(default_factory=dict)
    # rel path -> ownership/skip record (see README "ownership" file).
    owners: dict[str, dict] = field(default_factory=dict)
    # directories known to be real directories (not symlinks) right now.
    known_dirs: set[str] = field(default_factory=lambda: {""})
    # paths written by the current layer, and their ancestors (for whiteouts).
    layer_paths: set[str] = field(default_factory=set)
    layer_ancestors: set[str] = field(default_factory=set)
    chown: bool = _IS_ROOT
    threads: int = WRITER_THREADS

    def __post_init__(self) -> None:
        self.root_s = os.path.abspath(self.root)
        self.dir_meta.setdefault("", (0o755, 0))
        self._pool = ThreadPoolExecutor(self.threads, "unpack") if self.threads > 1 else None
        self._pending: dict[str, Future] = {}
        self._pending_bytes = 0

    # -- writer threads ---------------------------------------------------------------

    def flush(self) -> None:
        """Wait for every queued file write (and raise the first failure)."""
        pending, self._pending = self._pending, {}
        self._pending_bytes = 0
        for fut in pending.values():
            fut.result()

    def close(self) -> None:
        """Stop the writer threads; nothing is written after this returns."""
        if self._pool is not None:
            for fut in self._pending.values():
                fut.cancel()
            self._pool.shutdown(wait=True)
            self._pool = None
        self._pending = {}

    def _abs(self, rel: str) -> str:
        return f"{self.root_s}/{rel}" if rel else self.root_s

    # -- layers -----------------------------------------------------------------

    def begin_layer(self) -> None:
        """Whiteouts act on lower layers only: forget what the previous layer wrote."""
        self.layer_paths.clear()
        self.layer_ancestors.clear()
        self.stats.layers += 1

    def _mark_written(self, rel: str) -> None:
        self.layer_paths.add(rel)
        parent = rel
        while "/" in parent:
            parent = parent.rsplit("/", 1)[0]
            if parent in self.layer_ancestors:
                break
            self.layer_ancestors.add(parent)

    # -- path resolution --------------------------------------------------------

    def resolve_dir(self, parts: list[str], entry: str, create: bool = True) -> str:
        """Real tree-relative directory for `parts`, following only in-tree relative symlinks.

        Missing directories are created (mode 0755, like docker) when `create`; a
        symlink with an absolute target, or one whose `..` climbs above the root,
        makes the entry unsafe. Raises FileNotFoundError when missing and not `create`.
        """
        stack = list(reversed(parts))
        cur: list[str] = []
        followed = 0
        while stack:
            comp = stack.pop()
            if comp in ("", "."):
                continue
            if comp == "..":  # only from a symlink target
                if not cur:
                    raise UnsafeEntryError(f"layer entry {entry!r} leads outside the image through a symlink")
                cur.pop()
                continue
            cand = "/".join(cur + [comp])
            if cand in self.known_dirs:
                cur.append(comp)
                continue
            if cand in self._pending:
                self.flush()
            try:
                st = os.lstat(self._abs(cand))
            except FileNotFoundError:
                if not create:
                    raise
                self._mkdir(cand, 0o755, 0)
                cur.append(comp)
                continue
            if stat.S_ISDIR(st.st_mode):
                self.known_dirs.add(cand)
                cur.append(comp)
            elif stat.S_ISLNK(st.st_mode):
                target = os.readlink(self._abs(cand))
                followed += 1
                if target.startswith("/"):
                    raise UnsafeEntryError(
                        f"layer entry {entry!r} goes through symlink {cand!r} -> {target!r}, "
                        "which points outside the image tree"
                    )
                if followed > MAX_SYMLINKS:
                    raise UnsafeEntryError(f"layer entry {entry!r}: too many levels of symlinks")
                stack.extend(reversed(target.split("/")))
            else:
                raise OcirunError(f"layer entry {entry!r}: {cand!r} is not a directory")
        return "/".join(cur)

    def _split(self, rel: str, entry: str, create: bool = True) -> tuple[str, str]:
        """(real parent dir, base name) of a cleaned entry path."""
        parent, _, base = rel.rpartition("/")
        return self.resolve_dir(parent.split("/") if parent else [], entry, create), base

    # -- removal ------------------------------------------------------------------

    def _forget_under(self, rel: str, was_dir: bool) -> None:
        """Drop recorded metadata of a removed path (and of its subtree)."""
        self.owners.pop(rel, None)
        self.dir_meta.pop(rel, None)
        if was_dir:
            self.known_dirs = {""}
            prefix = rel + "/"
            for d in (self.owners, self.dir_meta):
                for key in [k for k in d if k.startswith(prefix)]:
                    del d[key]

    def _remove(self, rel: str) -> None:
        """Remove whatever is at `rel` (never following a symlink)."""
        self.flush()  # a queued file may be at or below rel
        try:
            st = os.lstat(self._abs(rel))
        except FileNotFoundError:
            return
        is_dir = stat.S_ISDIR(st.st_mode)
        if is_dir:
            rmtree_at(None, self._abs(rel))
        else:
            os.unlink(self._abs(rel))
        self._forget_under(rel, is_dir)

    def _remove_lower(self, rel: str) -> None:
        """Remove what lower layers put at `rel`, keeping what this layer wrote."""
        if rel in self.layer_paths or rel in self.layer_ancestors:
            try:
                st = os.lstat(self._abs(rel))
            except FileNotFoundError:
                return
            if stat.S_ISDIR(st.st_mode):
                for child in os.listdir(self._abs(rel)):
                    self._remove_lower(_join(rel, child))
            return
        self._remove(rel)

    # -- entries ------------------------------------------------------------------

    def apply(self, member: tarfile.TarInfo, tar: tarfile.TarFile) -> None:
        """Apply one tar member (its data read from `tar`)."""
        self.stats.entries += 1
        rel = clean_name(member.name)
        entry = member.name
        if rel == "":
            if member.isdir():
                self.dir_meta[""] = (member.mode & 0o7777, _mtime_ns(member))
            return
        base = rel.rpartition("/")[2]
        if base.startswith(WHITEOUT_PREFIX):
            self._whiteout(rel, entry)
            return
        parent, base = self._split(rel, entry)
        path = _join(parent, base)
        if member.isdir():
            self._dir(path, member)
        elif member.isreg():
            self._file(path, member, tar)
        elif member.issym():
            self._symlink(path, member)
        elif member.islnk():
            self._hardlink(path, member)
        elif member.type in SKIPPED_TYPES:
            self._skip(path, member)
            return
        else:
            return  # unknown types (GNU volume headers...) carry nothing to write
        self._mark_written(path)
        self._record_owner(path, member)

    def _whiteout(self, rel: str, entry: str) -> None:
        """`.wh.NAME` removes NAME from lower layers; `.wh..wh..opq` empties the directory."""
        self.flush()
        self.stats.whiteouts += 1
        if rel.rpartition("/")[2][len(WHITEOUT_PREFIX) :] in ("", ".", ".."):
            raise UnsafeEntryError(f"layer entry {entry!r} is a malformed whiteout")
        try:
            parent, base = self._split(rel, entry, create=False)
        except FileNotFoundError:
            return  # nothing below to hide
        if base == OPAQUE_MARKER:
            try:
                children = os.listdir(self._abs(parent))
            except (FileNotFoundError, NotADirectoryError):
                return
            self._mark_ancestors_only(parent)
            for child in children:
                self._remove_lower(_join(parent, child))
            return
        name = base[len(WHITEOUT_PREFIX) :]
        if name.startswith(".wh."):
            return  # aufs metadata (.wh..wh.plnk and friends): not content
        self._remove_lower(_join(parent, name))

    def _mark_ancestors_only(self, parent: str) -> None:
        """An opaque dir itself stays; only its lower children go."""
        if parent:
            self._mark_written(parent)

    def _prepare(self, path: str, want_dir: bool = False) -> bool:
        """Clear the way for a new entry at `path`; True if a directory is already there."""
        if path in self._pending:
            self.flush()
        try:
            st = os.lstat(self._abs(path))
        except FileNotFoundError:
            return False
        if want_dir and stat.S_ISDIR(st.st_mode):
            return True
        self._remove(path)
        return False

    def _mkdir(self, path: str, mode: int, mtime_ns: int) -> None:
        os.mkdir(self._abs(path), 0o700)
        self.known_dirs.add(path)
        self.dir_meta[path] = (mode, mtime_ns)
        self.stats.dirs += 1

    def _dir(self, path: str, member: tarfile.TarInfo) -> None:
        if self._prepare(path, want_dir=True):
            self.known_dirs.add(path)
            self.dir_meta[path] = (member.mode & 0o7777, _mtime_ns(member))
        else:
            self._mkdir(path, member.mode & 0o7777, _mtime_ns(member))
        self._chown(None, path, member)  # mode comes in finish(), after chown

    def _file(self, path: str, member: tarfile.TarInfo, tar: tarfile.TarFile) -> None:
        self._prepare(path)
        self.stats.files += 1
        self.stats.bytes_written += member.size
        owner = (member.uid, member.gid) if self.chown else None
        mode, mt = member.mode & 0o7777, _mtime_ns(member)
        if self._pool is not None and member.size <= SMALL_FILE:
            data = b""
            if member.size:
                src = tar.extractfile(member)
                data = src.read(member.size) if src is not None else b""
                if len(data) != member.size:
                    raise LayerFormatError(f"layer entry {member.name!r} is truncated")
            if self._pending_bytes > PENDING_BYTES_MAX:
                self.flush()
            self._pending[path] = self._pool.submit(write_new_file, self._abs(path), [data], mode, mt, owner)
            self._pending_bytes += len(data)
            return
        src = tar.extractfile(member)
        chunks = iter(lambda: src.read(COPY_CHUNK), b"") if src is not None and member.size else iter(())
        written = write_new_file(self._abs(path), chunks, mode, mt, owner)
        if written != member.size:
            raise LayerFormatError(f"layer entry {member.name!r} is truncated")

    def _symlink(self, path: str, member: tarfile.TarInfo) -> None:
        self._prepare(path)
        os.symlink(member.linkname, self._abs(path))  # byte for byte: never rewritten
        self._chown(None, path, member)
        mt = _mtime_ns(member)
        os.utime(self._abs(path), ns=(mt, mt), follow_symlinks=False)
        self.stats.symlinks += 1

    def _hardlink(self, path: str, member: tarfile.TarInfo) -> None:
        self.flush()  # the target may still be queued
        entry = member.name
        try:
            target_rel = clean_name(member.linkname)
        except UnsafeEntryError:
            target_rel = ""
        if not target_rel:
            raise UnsafeEntryError(
                f"layer entry {entry!r} is a hardlink to {member.linkname!r}, outside the image tree"
            )
        try:
            tparent, tbase = self._split(target_rel, entry, create=False)
        except FileNotFoundError:
            raise OcirunError(f"layer entry {entry!r} is a hardlink to missing {member.linkname!r}") from None
        target = _join(tparent, tbase)
        try:
            st = os.lstat(self._abs(target))
        except FileNotFoundError:
            raise OcirunError(f"layer entry {entry!r} is a hardlink to missing {member.linkname!r}") from None
        if stat.S_ISDIR(st.st_mode):
            raise UnsafeEntryError(f"layer entry {entry!r} is a hardlink to directory {member.linkname!r}")
        if stat.S_ISLNK(st.st_mode):
            link = os.readlink(self._abs(target))
            new_parent = path.rpartition("/")[0]
            if link.startswith("/") or not (_stays_inside(tparent, link) and _stays_inside(new_parent, link)):
                raise UnsafeEntryError(
                    f"layer entry {entry!r} is a hardlink to symlink {member.linkname!r} -> {link!r}, "
                    "which points outside the image tree"
                )
        if target == path:
            return
        self._prepare(path)
        os.link(self._abs(target), self._abs(path), follow_symlinks=False)
        if target in self.owners:
            self.owners[path] = dict(self.owners[target])
        self.stats.hardlinks += 1

    def _skip(self, path: str, member: tarfile.TarInfo) -> None:
        """Device nodes and FIFOs need mknod privilege: record them, do not fail."""
        self.stats.skipped_special += 1
        self.owners[path] = {
            "type": SKIPPED_TYPES[member.type],
            "mode": member.mode & 0o7777,
            "uid": member.uid,
            "gid": member.gid,
            "major": member.devmajor,
            "minor": member.devminor,
            "skipped": True,
        }

    # -- ownership ------------------------------------------------------------------

    def _chown(self, fd: int | None, path: str | None, member: tarfile.TarInfo) -> None:
        if not self.chown:
            return
        try:
            if fd is not None:
                os.fchown(fd, member.uid, member.gid)
            else:
                os.lchown(self._abs(path), member.uid, member.gid)
        except OSError:
            pass  # e.g. a uid the filesystem cannot store: recorded below instead

    def _record_owner(self, path: str, member: tarfile.TarInfo) -> None:
        """Owners other than root that were not applied go to the ownership file."""
        if member.islnk():
            return
        if (member.uid or member.gid) and not self.chown:
            self.owners[path] = {"uid": member.uid, "gid": member.gid, "mode": member.mode & 0o7777}
        else:
            self.owners.pop(path, None)

    # -- the end ----------------------------------------------------------------------

    def finish(self) -> None:
        """Directory modes and mtimes last, deepest first (writing a child changes an mtime)."""
        self.flush()
        for rel in sorted(self.dir_meta, key=lambda p: p.count("/") + (1 if p else 0), reverse=True):
            mode, mtime = self.dir_meta[rel]
            p = self._abs(rel)
            try:
                fd = os.open(p, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
            except (FileNotFoundError, NotADirectoryError, OSError):
                continue
            try:
                if rel == "":
                    mode |= 0o700  # the tree's root must stay usable by its owner
                os.fchmod(fd, mode)
                if mtime:
                    os.utime(fd, ns=(mtime, mtime))
            finally:
                os.close(fd)

    def ownership_doc(self) -> dict:
        return {"version": 1, "entries": dict(sorted(self.owners.items()))}


def _stays_inside(parent: str, link: str) -> bool:
    """Does a relative symlink target, taken from directory `parent`, stay in the tree?"""
    depth = len(parent.split("/")) if parent else 0
    for comp in link.split("/"):
        if comp == "..":
            depth -= 1
            if depth < 0:
                return False
        elif comp not in ("", "."):
            depth += 1
    return True


def _mtime_ns(member: tarfile.TarInfo) -> int:
    try:
        return int(float(member.mtime) * 1_000_000_000)
    except (TypeError, ValueError, OverflowError):
        return 0
