"""The tree after a RUN step, made from the step's container instead of its layer.

The layer a RUN just wrote is the container's change list (`layers.diff` entries).
Applying that list to a hardlink clone of the step's tree gives the tree the
layer would unpack to, without decompressing the layer again or writing its
bytes a second time: the store's own unpacker (`layers.unpack.TreeWriter`) does
the whiteouts, directories, links, modes, owners and the `ownership` record from
the same tar headers the layer carries (`layers.layerwrite.tarinfo`, so mtimes
are clamped to SOURCE_DATE_EPOCH alike), and only a regular file's bytes come
differently: the container's own copy of the file is hardlinked in (the
container is removed right after), or copied where a link is refused or the
file's new mode would keep the layer writer, reading the same files at the
same time, out.
"""

from __future__ import annotations

import errno
import os
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from layers.layerwrite import Entry, tarinfo
from layers.treewriter import TreeWriter


class _Sources:
    """What TreeWriter reads a file's bytes from: the entry's host file (a tar stand-in)."""

    def __init__(self, sources: dict[str, str]):
        self.sources = sources

    def extractfile(self, member: tarfile.TarInfo) -> BinaryIO | None:
        src = self.sources.get(member.name)
        return open(src, "rb") if src is not None else None  # noqa: SIM115 (TreeWriter reads it)


@dataclass
class LinkingWriter(TreeWriter):
    """A TreeWriter whose regular files are hardlinks of the entries' host files."""

    sources: dict[str, str] = field(default_factory=dict)

    def _file(self, path: str, member: tarfile.TarInfo, tar) -> None:
        src = self.sources.get(member.name)
        if src is None or not (self.chown or member.mode & 0o400):
            # a mode the owner cannot read: copied, so the layer writer reading the
            # container's file meanwhile is not locked out by the chmod below
            return super()._file(path, member, tar)
        self._prepare(path)
        dst = self._abs(path)
        try:
            os.link(src, dst, follow_symlinks=False)
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.EACCES):
                raise
            return super()._file(path, member, tar)
        self.stats.files += 1
        if self.chown:
            try:
                os.lchown(dst, member.uid, member.gid)
            except OSError:
                pass  # recorded in the ownership file instead, as the unpacker does
        os.chmod(dst, member.mode & 0o7777)  # after chown, which clears setuid bits
        mt = int(member.mtime) * 1_000_000_000
        os.utime(dst, ns=(mt, mt), follow_symlinks=False)


def apply_entries(rootfs: Path, owners: dict[str, dict], dirs: dict[str, tuple[int, int]],
                  entries: list[Entry], epoch: int | None) -> dict:
    """Apply a step's entries to `rootfs` (a clone of the tree below, whose directories'
    modes and mtimes are `dirs`, applied at the end); the ownership document."""
    headers = []
    sources: dict[str, str] = {}
    for e in entries:
        info = tarinfo(e, epoch)
        if e.kind == "file":
            if e.source is not None:
                sources[info.name] = e.source
            else:
                info.size = 0
        headers.append(info)
    writer = LinkingWriter(rootfs, owners=dict(owners), dir_meta=dict(dirs), threads=1, sources=sources)
    reader = _Sources(sources)
    try:
        writer.begin_layer()
        for info in headers:
            writer.apply(info, reader)  # type: ignore[arg-type]
        writer.finish()
    finally:
        writer.close()
    return writer.ownership_doc()
