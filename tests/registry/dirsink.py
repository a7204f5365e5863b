"""A minimal BlobSink on a directory: the reference implementation of the protocol.

The registry tests pull into it, without the image store (layers/blobs.py is
the real one). Layout: ROOT/blobs/sha256/HEX, ROOT/tmp/HEX.partial,
ROOT/locks/HEX.lock (fcntl.flock: exclusive per blob, across processes).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ocirun.util.locks import flocked


class DirectorySink:
    """Content-addressed blobs under `root`; commit is an atomic rename."""

    def __init__(self, root: Path | str):
        self.root = Path(root)
        for sub in ("blobs/sha256", "tmp", "locks"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        algo, _, hexd = digest.partition(":")
        if algo != "sha256" or len(hexd) != 64 or not all(c in "0123456789abcdef" for c in hexd):
            raise ValueError(f"bad digest {digest!r}")
        return self.root / "blobs" / algo / hexd

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def partial_path(self, digest: str) -> Path:
        return self.root / "tmp" / (self.path(digest).name + ".partial")

    def commit(self, digest: str, partial: Path) -> Path:
        final = self.path(digest)
        os.chmod(partial, 0o444)
        os.replace(partial, final)
        return final

    @contextmanager
    def lock(self, digest: str) -> Iterator[None]:
        with flocked(self.root / "locks" / (self.path(digest).name + ".lock")):
            yield
