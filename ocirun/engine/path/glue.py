"""The glue tree: host directories standing for guest directories that only
bindings need ("/opt" for `-b X:/opt/foo` when the rootfs has no /opt), like
PRoot's. Each holds an empty entry per bound child, so stat/opendir/readdir of
the parents work. Private to one translator, made lazily, removed by close()."""

from __future__ import annotations

import os

TYPE_CHECKING = False  # typing's, without importing typing (start-up time)
if TYPE_CHECKING:
    import weakref

GLUE_PREFIX = "ocirun-glue-"  # the tree's directory's name starts so


class GlueTree:
    def __init__(self, parent_dir: str | None):
        self.parent_dir = parent_dir  # where the tree's temp dir is made (None: $TMPDIR)
        self.root: str | None = None
        self._finalizer: weakref.finalize | None = None
        self.glued: set[str] = set()

    def dir(self, guest: str, children: dict[str, set[str]], virtual: set[str],
            bound: dict[str, str]) -> str:
        """Host directory for the virtual guest dir `guest`, with placeholder children.

        Created once (with its whole virtual subtree) on first use. children:
        guest dir -> names bindings need in it; virtual: the guest dirs made of
        glue; bound: guest path -> host path of each binding ('' = '/')."""
        root = self.root
        if root is None:
            import shutil  # (only when a glue directory is needed: start-up time)
            import tempfile
            import weakref

            root = tempfile.mkdtemp(prefix=GLUE_PREFIX, dir=self.parent_dir)
            self.root = root
            self._finalizer = weakref.finalize(self, shutil.rmtree, root, True)
        path = root + guest
        if guest in self.glued:
            return path
        os.makedirs(path, exist_ok=True)
        for name in children.get(guest, ()):
            child = guest + "/" + name
            entry = path + "/" + name
            host = bound.get(child)
            if child in virtual:
                self.dir(child, children, virtual, bound)  # its entries are looked up as real dirs
            elif os.path.lexists(entry):
                continue
            elif host is not None and os.path.isdir(host or "/"):
                os.mkdir(entry)
            else:
                with open(entry, "x"):
                    pass
        self.glued.add(guest)
        return path

    def close(self) -> None:
        if self._finalizer is not None:
            self._finalizer()
        self.glued.clear()
