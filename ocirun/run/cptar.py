"""`ocirun cp` with `-`: a container path as a tar stream, or a tar stream into one.

Out (`ocirun cp CONTAINER:SRC -`): a tar of SRC named by its last component, as
docker writes it, with the owners and modes the guest sees (the container's
fake-root records, else the image's ownership file, else root for the user's own
files) — the same view `commit` writes layers from (layers.diff.Owners).
In (`ocirun cp - CONTAINER:DEST`): the tar is unpacked by the store's hostile-safe
unpacker (layers.unpack: no `..`, no absolute names, no links out) into a staging
directory in the container's own directory, and its content is copied into DEST
(which must be a directory) by ocirun.run.cpfiles, so the image is never modified.
"""

from __future__ import annotations

import os
import stat
import tarfile
import tempfile
from pathlib import Path
from typing import BinaryIO

from ocirun.errors import OcirunError
from ocirun.run.containers import Container
from ocirun.run.cpfiles import Side, copy, guest_owners, resolve
from ocirun.util.fs import rmtree


def tar_out(c: Container, guest: str, follow: bool, out: BinaryIO) -> int:
    """Write SRC as a tar stream; returns the bytes of file data."""
    side = resolve(c, guest, follow)
    if not os.path.lexists(side.path):
        raise OcirunError(f"Could not find the file {guest} in container {c.name}")
    root = c.tree().root
    top = os.path.basename(side.path.rstrip("/")) if not side.trailing_dot else "."
    total = 0
    with guest_owners(c) as owners, tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        stack = [(side.path, top)]
        while stack:
            path, name = stack.pop()
            st = os.lstat(path)
            if stat.S_ISDIR(st.st_mode):
                side.ensure(path)
                st = os.lstat(path)
                stack += [(os.path.join(path, n), f"{name}/{n}") for n in sorted(os.listdir(path), reverse=True)
                          if not n.startswith(".ocirun-")]
            info = tar.gettarinfo(path, name)
            if path.startswith(root + "/") or path == root:
                info.uid, info.gid, mode, _rdev = owners.of(os.path.relpath(path, root), st)
                info.mode = stat.S_IMODE(mode)
            info.uname = info.gname = ""
            if info.isreg():
                with open(path, "rb") as f:
                    tar.addfile(info, f)
                total += info.size
            elif info.isdir() or info.issym() or info.islnk() or info.isfifo():
                tar.addfile(info)
    return total


def tar_in(c: Container, source: BinaryIO, guest: str) -> int:
    """Unpack a tar stream into the container directory DEST."""
    from layers.treewriter import TreeWriter

    dest = resolve(c, guest, True)
    if not os.path.isdir(dest.path):
        raise OcirunError(f"destination {guest} must be a directory in container {c.name}")
    stage = Path(tempfile.mkdtemp(prefix=".cp-", dir=c.path))
    try:
        tree = stage / "tree"
        os.mkdir(tree, 0o700)
        writer = TreeWriter(tree, threads=1)
        try:
            writer.begin_layer()
            with tarfile.open(fileobj=source, mode="r|*") as tar:
                for member in tar:
                    writer.apply(member, tar)
                    tar.members.clear()
            writer.flush()
            writer.finish()
        except (tarfile.TarError, EOFError) as exc:
            raise OcirunError(f"the input is not a tar archive: {exc}") from None
        finally:
            writer.close()
        return copy(Side(str(tree), lambda _p: None, trailing_dot=True), dest, "-")[0]
    finally:
        rmtree(stage)
