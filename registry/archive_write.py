"""Writing image archives (`ocirun save`): what the formats share.

The formats are written by registry.archive_docker (docker-archive, `docker save`'s
tarball) and registry.archive_oci (an OCI image layout in a tar), chosen by
registry.save; registry.archive reads both back. An archive is a tar stream, so it can go to a pipe: every member
is added with its size known (a layer that must be decompressed first goes through
a temporary file). Members carry fixed metadata (mtime 0, root, 0644/0755), so the
same images give the same archive.
"""

from __future__ import annotations

import io
import os
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from registry.types import Descriptor


@dataclass
class SaveImage:
    """One stored image to save, and the names (`docker.io/library/x:tag`) to save it under."""

    config: bytes
    config_digest: str
    manifest: bytes
    manifest_digest: str
    media_type: str
    layers: list[Descriptor]
    diff_ids: list[str]
    names: list[str] = field(default_factory=list)
    platform: dict[str, str] = field(default_factory=dict)  # OCI descriptor platform


class TarOut:
    """A tar stream of regular files and their directories, each added once."""

    def __init__(self, fileobj: BinaryIO):
        self.tar = tarfile.open(fileobj=fileobj, mode="w|", format=tarfile.PAX_FORMAT)
        self.names: set[str] = set()

    def _info(self, name: str, size: int, kind: bytes = tarfile.REGTYPE) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.size, info.type, info.mtime = size, kind, 0
        info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
        info.uname = info.gname = "root"
        return info

    def _parents(self, name: str) -> None:
        parts = name.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d not in self.names:
                self.names.add(d)
                self.tar.addfile(self._info(d, 0, tarfile.DIRTYPE))

    def add_bytes(self, name: str, data: bytes) -> None:
        if name in self.names:
            return
        self._parents(name)
        self.names.add(name)
        self.tar.addfile(self._info(name, len(data)), io.BytesIO(data))

    def add_file(self, name: str, path: Path | str) -> None:
        if name in self.names:
            return
        self._parents(name)
        self.names.add(name)
        with open(path, "rb") as f:
            self.tar.addfile(self._info(name, os.fstat(f.fileno()).st_size), f)

    def close(self) -> None:
        self.tar.close()


def blob_name(digest: str) -> str:
    algo, _, hexd = digest.partition(":")
    return f"blobs/{algo}/{hexd}"
