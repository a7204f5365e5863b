"""Build states (an image config and its layers) and their root filesystems.

A state's tree is made only when something needs it (a RUN, COPY --from, a
--chown by name, the final image). After a RUN it is made at once from the
step's container (`Trees.derived`, ocirun.build.derive): a hardlink clone of the
tree below with the step's change list applied, while the layer is compressed
in another thread. Otherwise (a cached step) it is the nearest stored tree
below, cloned as hardlinks, with the layers added since applied by the store's
own unpacker (which replaces files, never writes into a shared inode); a state
whose steps changed only the config uses the tree below as it is. Trees are
stored as untagged images of the store (source "build-cache", hidden from
`ocirun images`), so they are removed with `ocirun image prune`, and a pruned
one is unpacked again from its blobs. A tree being made lives in the store's
tmp/ under a lock: a killed build leaves a directory prune removes.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
import secrets
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from layers.diff import read_ownership
from layers.imagedoc import canonical_json, manifest
from layers.treewriter import TreeWriter
from layers.unpack import LayerSpec, apply_layer
from ocirun.errors import OcirunError
from ocirun.util.fs import rmtree

CACHE_SOURCE = "build-cache"


@dataclass
class State:
    """An image being built: its config, layer descriptors, and where its tree is."""

    config: dict[str, Any]
    layers: list[dict[str, Any]] = field(default_factory=list)
    tree_id: str | None = None  # a stored image whose rootfs is this state minus `pending`
    pending: list[dict[str, Any]] = field(default_factory=list)

    @property
    def config_bytes(self) -> bytes:
        return canonical_json(self.config)

    @property
    def id(self) -> str:
        return "sha256:" + hashlib.sha256(self.config_bytes).hexdigest()

    @property
    def inner(self) -> dict[str, Any]:
        """The runtime part of the config (Env, Cmd, ...), created if missing."""
        return self.config.setdefault("config", {})

    @property
    def platform(self) -> str:
        c = self.config
        return "/".join(p for p in (c.get("os", "linux"), c.get("architecture", ""), c.get("variant")) if p)

    def derive(self, config: dict[str, Any], layer: dict[str, Any] | None = None) -> State:
        """The next state: a new config, and one more layer on top when given."""
        if layer is None:
            return State(config, list(self.layers), self.tree_id, list(self.pending))
        return State(config, self.layers + [layer], self.tree_id, self.pending + [layer])

    def copy_config(self) -> dict[str, Any]:
        return copy.deepcopy(self.config)


def clone_tree(src: Path, dst: Path, defer_modes: bool = False) -> dict[str, tuple[int, int]]:
    """A copy of `src` at `dst` whose files are hardlinks (directories and symlinks are new).

    Directory entry types answer for files and symlinks, so only directories (and
    what is neither) cost a stat. Returns each directory's (mode, mtime_ns) by
    tree-relative path; with `defer_modes` the directories are left writable for
    a TreeWriter to fill (its `finish` applies those modes and mtimes)."""
    os.mkdir(dst, 0o700)
    dirs: list[tuple[str, Path, os.stat_result]] = [("", dst, os.lstat(src))]
    stack = [(src, dst, "")]
    root = os.geteuid() == 0
    while stack:
        s, d, rel = stack.pop()
        with os.scandir(s) as it:
            entries = list(it)
        for e in entries:
            target = os.path.join(d, e.name)
            if e.is_file(follow_symlinks=False):
                os.link(e.path, target, follow_symlinks=False)
            elif e.is_symlink():
                os.symlink(os.readlink(e.path), target)
                if root:
                    _lchown(target, e.stat(follow_symlinks=False))
            elif e.is_dir(follow_symlinks=False):
                os.mkdir(target, 0o700)
                crel = f"{rel}/{e.name}" if rel else e.name
                dirs.append((crel, Path(target), e.stat(follow_symlinks=False)))
                stack.append((Path(e.path), Path(target), crel))
            else:
                st = e.stat(follow_symlinks=False)
                if stat.S_ISFIFO(st.st_mode):
                    os.mkfifo(target, stat.S_IMODE(st.st_mode))
                else:
                    os.link(e.path, target, follow_symlinks=False)
    for _rel, d, st in reversed(dirs):  # deepest last-made first: parents' mtimes stay
        _lchown(d, st)
        if not defer_modes:
            os.chmod(d, stat.S_IMODE(st.st_mode) | (0o700 if d == dst else 0))
            os.utime(d, ns=(st.st_atime_ns, st.st_mtime_ns))
    return {rel: (stat.S_IMODE(st.st_mode), st.st_mtime_ns) for rel, _d, st in dirs}


def _lchown(path: Path | str, st: os.stat_result) -> None:
    if os.geteuid() == 0:
        with contextlib.suppress(OSError):
            os.lchown(path, st.st_uid, st.st_gid)


class Trees:
    """Materialises the trees of states in the image store."""

    def __init__(self, store: Any):
        self.store = store

    def record(self, state: State) -> Any:
        """The stored image holding this state's tree (made now if needed): its own, or
        the tree below when no layer came since (a config step changes no file)."""
        rec = self.store.get(state.id)
        if rec is None and not state.pending and state.tree_id is not None:
            rec = self.store.get(state.tree_id)
        if rec is not None:
            self.store.ensure_unpacked(rec)
            state.tree_id, state.pending = rec.id, []
            return rec
        rec = self._make(state)
        state.tree_id, state.pending = rec.id, []
        return rec

    def rootfs(self, state: State) -> Path:
        return self.record(state).rootfs

    def _make(self, state: State) -> Any:
        base = self.store.get(state.tree_id) if state.tree_id else None
        man = manifest(state.config_bytes, state.layers)
        if base is None and state.tree_id is not None:
            # the tree below was pruned: unpack everything from the blobs
            return self.store.add_image(state.config_bytes, man, source=CACHE_SOURCE)
        with self.staging() as stage:
            rootfs = stage / "rootfs"
            if base is not None:
                dirs = clone_tree(self.store.ensure_unpacked(base), rootfs, defer_modes=True)
                owners = read_ownership(base.ownership_path)
            else:
                os.mkdir(rootfs, 0o755)
                owners, dirs = {}, {}
            self._apply(rootfs, owners, dirs, state.pending)
            return self.store.add_image(state.config_bytes, man, tree=rootfs, source=CACHE_SOURCE)

    @contextlib.contextmanager
    def derived(self, below: Any, entries: list[Any], epoch: int | None) -> Iterator[Path]:
        """The tree after a RUN step, staged from the tree `below` it and the step's change
        list while the step's container still holds the files (ocirun.build.derive)."""
        from ocirun.build.derive import apply_entries

        with self.staging() as stage:
            rootfs = stage / "rootfs"
            dirs = clone_tree(self.store.ensure_unpacked(below), rootfs, defer_modes=True)
            doc = apply_entries(rootfs, read_ownership(below.ownership_path), dirs, entries, epoch)
            (stage / "ownership").write_text(json.dumps(doc, indent=1) + "\n")
            yield rootfs

    def adopt(self, state: State, rootfs: Path) -> None:
        """Store a staged tree (`derived`) as the tree of `state`."""
        if self.store.get(state.id) is None:
            man = manifest(state.config_bytes, state.layers)
            self.store.add_image(state.config_bytes, man, tree=rootfs, source=CACHE_SOURCE)
        state.tree_id, state.pending = state.id, []

    def _apply(self, rootfs: Path, owners: dict[str, dict], dirs: dict[str, tuple[int, int]],
               layers: list[dict[str, Any]]) -> None:
        writer = TreeWriter(rootfs, owners=dict(owners), dir_meta=dict(dirs))
        try:
            for d in layers:
                apply_layer(writer, self.store.blobs.path(d["digest"]), LayerSpec(d["digest"], None))
            writer.finish()
        finally:
            writer.close()
        (rootfs.parent / "ownership").write_text(json.dumps(writer.ownership_doc(), indent=1) + "\n")

    @contextlib.contextmanager
    def staging(self):
        """A private directory in the store's tmp/, locked so `prune` leaves it alone while
        this build runs and removes it if the build is killed."""
        token = secrets.token_hex(32)
        with self.store._image_lock("sha256:" + token):
            stage = Path(tempfile.mkdtemp(prefix=f"unpack-{token}-build-", dir=self.store.tmp_dir))
            try:
                yield stage
            finally:
                rmtree(stage)

    def final(self, state: State, tags: list[str], docker: bool = False) -> Any:
        """Store the built image under its own config (sharing the tree), then tag it."""
        man = manifest(state.config_bytes, [layer_descriptor(d, docker) for d in state.layers], docker)
        rec = self.store.get(state.id)
        if rec is None and (state.pending or state.tree_id is None):
            rec = self.record(state)
        elif rec is None:
            base = self.store.get(state.tree_id)
            if base is None:
                raise OcirunError(f"the tree of {state.tree_id[:19]} is gone (pruned during the build?)")
            with self.staging() as stage:
                clone_tree(self.store.ensure_unpacked(base), stage / "rootfs")
                if base.ownership_path.exists():
                    (stage / "ownership").write_bytes(base.ownership_path.read_bytes())
                rec = self.store.add_image(state.config_bytes, man, tree=stage / "rootfs")
        if rec.source == CACHE_SOURCE:
            rec = self.store.set_source(rec, "build")
        if rec.manifest_digest != "sha256:" + hashlib.sha256(man).hexdigest():
            rec = self.store.replace_manifest(rec, man)
        for t in tags:
            self.store.add_tag(t, rec)
        return self.store.get(rec.id) or rec


def layer_descriptor(d: dict[str, Any], docker: bool) -> dict[str, Any]:
    """A layer descriptor with the media type of the wanted format."""
    from layers.layerwrite import MEDIA_TYPES

    mt = d["mediaType"]
    kind = "zstd" if "zstd" in mt else ("gzip" if "gzip" in mt else "none")
    oci, dock = MEDIA_TYPES[kind]
    if docker and dock is None:
        raise OcirunError("Docker's image format has no zstd layers (use --format oci or --compression gzip)")
    return {**d, "mediaType": dock if docker else oci}
