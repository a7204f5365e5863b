"""`ocirun save`: an archive of stored images in one of the FORMATS."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from ocirun.errors import OcirunError
from registry.archive_docker import write_docker_archive
from registry.archive_oci import write_oci_layout
from registry.archive_write import SaveImage, TarOut

FORMATS = ("docker-archive", "oci-archive")


def write_archive(images: list[SaveImage], fileobj: BinaryIO, fmt: str, blob_path: Callable[[str], Path],
                  tmp_dir: Path) -> None:
    """Write `images` to `fileobj` as `fmt` (one of FORMATS); blobs are read from `blob_path(digest)`."""
    out = TarOut(fileobj)
    if fmt == "docker-archive":
        write_docker_archive(images, out, blob_path, tmp_dir)
    elif fmt == "oci-archive":
        write_oci_layout(images, out, blob_path)
    else:
        raise OcirunError(f"unknown archive format {fmt!r} (use one of: {', '.join(FORMATS)})")
    out.close()
