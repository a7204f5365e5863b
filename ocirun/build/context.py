"""What COPY and ADD read: the build context (minus .dockerignore), another stage's
tree, or a local tar for ADD; turned into layer entries and a digest for the cache.

Sources are context-relative paths, with docker's wildcards (`*`, `?`, `[...]`)
matched per path component; a source can never leave its root (`..` stops at
it, as in docker). A directory source copies its contents. Owners are 0:0
unless --chown says otherwise; modes and mtimes are the source's (--chmod
replaces the mode).
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
import stat
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from layers.layerwrite import Entry
from layers.treewriter import clean_name
from ocirun.errors import OcirunError

_GLOB = re.compile(r"[*?\[]")


@dataclass
class IgnoreRules:
    """.dockerignore: the last matching pattern decides; `!` re-includes; `**` spans dirs."""

    rules: list[tuple[re.Pattern[str], bool]] = field(default_factory=list)

    @classmethod
    def load(cls, context: Path) -> IgnoreRules:
        try:
            text = (context / ".dockerignore").read_text()
        except FileNotFoundError:
            return cls()
        rules = []
        for line in text.splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            negate = line.startswith("!")
            pat = os.path.normpath(line[1:].strip() if negate else line).lstrip("/")
            if pat in ("", "."):
                continue
            rules.append((re.compile(_pattern_regex(pat)), negate))
        return cls(rules)

    def excluded(self, rel: str) -> bool:
        """Is `rel` (or a directory above it) excluded?"""
        out = False
        parts = rel.split("/")
        for regex, negate in self.rules:
            for i in range(len(parts), 0, -1):
                if regex.fullmatch("/".join(parts[:i])):
                    out = not negate
                    break
        return out


def _pattern_regex(pat: str) -> str:
    out, i = [], 0
    while i < len(pat):
        if pat.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pat.startswith("**", i):
            out.append(".*")
            i += 2
        elif pat[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pat[i] == "?":
            out.append("[^/]")
            i += 1
        elif pat[i] == "[":
            end = pat.find("]", i + 1)
            if end < 0:
                out.append(re.escape(pat[i]))
                i += 1
            else:
                cls = pat[i + 1 : end].replace("\\", "\\\\")
                out.append("[" + ("^" + cls[1:] if cls.startswith("^") else cls) + "]")
                i = end + 1
        else:
            out.append(re.escape(pat[i]))
            i += 1
    return "".join(out)


@dataclass
class Source:
    """A root to copy from: the context (with its ignore rules) or a tree."""

    root: Path
    ignore: IgnoreRules = field(default_factory=IgnoreRules)
    what: str = "build context"

    def _resolve(self, rel: str) -> Path:
        parts = [p for p in rel.split("/") if p not in ("", ".")]
        clean: list[str] = []
        for p in parts:
            if p == "..":
                if clean:
                    clean.pop()
            else:
                clean.append(p)
        return self.root.joinpath(*clean) if clean else self.root

    def matches(self, pattern: str) -> list[tuple[str, Path]]:
        """(context-relative path, host path) for one COPY source (wildcards expanded)."""
        if not _GLOB.search(pattern):
            host = self._resolve(pattern)
            rel = os.path.relpath(host, self.root)
            rel = "" if rel == "." else rel
            if not os.path.lexists(host) or (rel and self.ignore.excluded(rel)):
                raise OcirunError(f"{self.what}: {pattern}: no such file or directory"
                                  + (" (or excluded by .dockerignore)" if self.ignore.rules else ""))
            return [(rel, host)]
        found = sorted(self._glob([p for p in pattern.split("/") if p not in ("", ".")], "", self.root))
        if not found:
            raise OcirunError(f"{self.what}: no source files were specified: {pattern} matches nothing")
        return found

    def _glob(self, parts: list[str], rel: str, host: Path) -> Iterator[tuple[str, Path]]:
        if not parts:
            yield rel, host
            return
        head, rest = parts[0], parts[1:]
        if not _GLOB.search(head):
            nxt = host / head
            if os.path.lexists(nxt) and not self.ignore.excluded(_join(rel, head)):
                yield from self._glob(rest, _join(rel, head), nxt)
            return
        try:
            names = sorted(os.listdir(host))
        except OSError:
            return
        for n in names:
            if fnmatch.fnmatchcase(n, head) and not self.ignore.excluded(_join(rel, n)):
                yield from self._glob(rest, _join(rel, n), host / n)


def _join(a: str, b: str) -> str:
    return f"{a}/{b}" if a else b


@dataclass
class CopySpec:
    """A COPY/ADD after expansion: sources, destination and ownership."""

    sources: list[str]
    dest: str  # absolute guest path; a trailing / means "into this directory"
    uid: int = 0
    gid: int = 0
    chmod: int | None = None
    unpack_tars: bool = False  # ADD
    dest_is_dir: bool = False  # the destination is a directory already (left as it is)


def _walk(host: Path, rel: str, ignore: IgnoreRules, ctx_rel: str) -> Iterator[tuple[str, Path, os.stat_result]]:
    """Everything under a directory source, parents first, names sorted, ignored ones left out."""
    for name in sorted(os.listdir(host)):
        crel = _join(ctx_rel, name)
        if ignore.excluded(crel):
            continue
        child = host / name
        st = os.lstat(child)
        yield _join(rel, name), child, st
        if stat.S_ISDIR(st.st_mode):
            yield from _walk(child, _join(rel, name), ignore, crel)


def _entry(name: str, host: Path, st: os.stat_result, spec: CopySpec, links: dict) -> Entry | None:
    mode = spec.chmod if spec.chmod is not None else stat.S_IMODE(st.st_mode)
    e = Entry(name, "file", spec.uid, spec.gid, mode, int(st.st_mtime))
    if stat.S_ISDIR(st.st_mode):
        e.kind, e.mode = "dir", stat.S_IMODE(st.st_mode)  # --chmod is for files
    elif stat.S_ISLNK(st.st_mode):
        e.kind, e.link = "symlink", os.readlink(host)
        e.mode = stat.S_IMODE(st.st_mode)
    elif stat.S_ISREG(st.st_mode):
        key = (st.st_dev, st.st_ino)
        if st.st_nlink > 1 and key in links:
            e.kind, e.link = "hardlink", links[key]
        else:
            e.source, e.size = str(host), st.st_size
            links[key] = name
    else:
        return None  # sockets, devices, fifos in a context: docker skips them too
    return e


def _is_tar(host: Path) -> bool:
    try:
        return tarfile.is_tarfile(host)
    except OSError:
        return False


def copy_entries(src: Source, spec: CopySpec, workdir_tmp: Path) -> list[Entry]:
    """The layer entries of one COPY/ADD (ADD tars are unpacked below `workdir_tmp`)."""
    matches = [m for pattern in spec.sources for m in src.matches(pattern)]
    into_dir = spec.dest.endswith("/") or len(matches) > 1 or spec.dest_is_dir
    dest = spec.dest.strip("/")
    entries: list[Entry] = []
    links: dict = {}
    for rel, host in matches:
        st = os.lstat(host)
        if stat.S_ISDIR(st.st_mode):
            if dest and not spec.dest_is_dir:
                entries.append(Entry(dest, "dir", spec.uid, spec.gid, 0o755, int(st.st_mtime)))
            for name, child, cst in _walk(host, dest, src.ignore, rel):
                e = _entry(name, child, cst, spec, links)
                if e is not None:
                    entries.append(e)
            continue
        if spec.unpack_tars and stat.S_ISREG(st.st_mode) and _is_tar(host):
            entries += tar_entries(host, dest, workdir_tmp)
            continue
        name = _join(dest, os.path.basename(rel)) if into_dir or not dest else dest
        e = _entry(name, host, st, spec, links)
        if e is not None:
            entries.append(e)
    return dedup(entries)


def dedup(entries: list[Entry]) -> list[Entry]:
    """One entry per name (the last wins, as the later copy would), parents first."""
    by_name: dict[str, Entry] = {}
    for e in entries:
        by_name[e.name] = e
    return sorted(by_name.values(), key=lambda e: e.name.split("/"))


def tar_entries(archive: Path, dest: str, tmp: Path) -> list[Entry]:
    """ADD of a local tar (any compression tarfile reads): its members below `dest`, owners kept."""
    out: list[Entry] = []
    extract = Path(tempfile.mkdtemp(prefix="add-", dir=tmp))
    try:
        with tarfile.open(archive, "r:*") as tf:
            for i, m in enumerate(tf):
                e = _tar_member(tf, m, dest, extract / str(i))
                if e is not None:
                    out.append(e)
    except (tarfile.TarError, OSError) as exc:
        raise OcirunError(f"ADD {archive.name}: cannot unpack: {exc}") from None
    return out


def _tar_member(tf: tarfile.TarFile, m: tarfile.TarInfo, dest: str, scratch: Path) -> Entry | None:
    rel = clean_name(m.name)
    if not rel:
        return None
    name = _join(dest, rel)
    e = Entry(name, "file", m.uid, m.gid, m.mode & 0o7777, int(m.mtime))
    if m.isdir():
        e.kind = "dir"
    elif m.issym():
        e.kind, e.link = "symlink", m.linkname
    elif m.islnk():
        e.kind, e.link = "hardlink", _join(dest, clean_name(m.linkname))
    elif m.isreg():
        f = tf.extractfile(m)
        with open(scratch, "wb") as out:
            while f is not None and (chunk := f.read(1 << 20)):
                out.write(chunk)
        e.source, e.size = str(scratch), m.size
    elif m.ischr() or m.isblk():
        e.kind, e.rdev = ("char" if m.ischr() else "block"), (m.devmajor, m.devminor)
    elif m.isfifo():
        e.kind = "fifo"
    else:
        return None
    return e


def entries_digest(entries: list[Entry]) -> str:
    """What the cache keys a COPY on: names, kinds, owners, modes, link targets, contents."""
    h = hashlib.sha256()
    for e in entries:
        h.update(f"{e.name}\0{e.kind}\0{e.uid}:{e.gid}\0{e.mode:o}\0{e.link}\0{e.rdev}\0{e.size}\0".encode())
        if e.source is not None:
            with open(e.source, "rb") as f:
                while chunk := f.read(1 << 20):
                    h.update(chunk)
        h.update(b"\n")
    return "sha256:" + h.hexdigest()
