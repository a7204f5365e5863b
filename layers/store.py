"""The per-user image store: blobs, unpacked image trees and the name -> image table.

Layout under the store root (README "Images" section):

    blobs/sha256/<hex>            verified content (manifests, configs, layers)
    images/<hex>/rootfs/          the unpacked tree, shared by every container of the image
    images/<hex>/config.json      the image config, manifest.json its manifest
    images/<hex>/ownership        owners/modes/devices not applied on disk (JSON)
    images/<hex>/meta.json        written LAST: an image without it is not complete
    repositories.json             name:tag -> {platform: image id, manifest digest}
    repositories.json.bak         the table before its last edit (layers/check.py rebuilds from it)
    tmp/                          unpack staging dirs, partial downloads
    locks/                        POSIX lock files (per image, per blob, table, gc)
    containers/                   the runner's (ocirun.run); it tells the store which
                                  images its containers use (a ContainerIndex)

Every record is written to a temporary name and renamed into place, and the
rootfs is built in tmp/ and renamed in whole, so a process killed at any point
leaves nothing that looks complete. Unpacking takes the image's lock and checks
again afterwards, so two processes pulling one image store it once.

Store is in three parts: this module (opening, pulling, installing, unpacking),
store_names.py (the name table and look-ups) and store_gc.py (removal, prune,
blob garbage collection, df); records.py holds what they share.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from layers.blobs import BlobError, BlobStore
from layers.records import (
    META,
    ContainerIndex,
    ImageRecord,
    NoContainers,
    familiar,
    hex_of,
    parse_platform,
)
from layers.store_gc import Removal
from layers.store_names import NameTable
from ocirun.errors import OcirunError
from ocirun.util.fs import atomic_write, rmtree, tree_size
from ocirun.util.locks import file_lock
from ocirun.util.paths import store_root

TYPE_CHECKING = False  # typing's, without importing typing (start-up time)
if TYPE_CHECKING:  # (layers.unpack is imported when a layer is unpacked: a cached run needs none of it)
    from typing import Any

    from layers.unpack import LayerSpec

_LAYER_MARKERS = ("tar", "layer")  # media types that carry filesystem layers


class Store(NameTable, Removal):
    """The image store at `root` (see the module docstring for its layout)."""

    def __init__(self, root: str | os.PathLike[str], containers: ContainerIndex | None = None):
        self.root = Path(root).absolute()
        self.blobs = BlobStore(self.root)
        self.images_dir = self.root / "images"
        self.tmp_dir = self.root / "tmp"
        self.locks_dir = self.root / "locks"
        self.repos_file = self.root / "repositories.json"
        self.additional: list[Store] = []  # read-only site stores (layers/sites.py)
        self.containers: ContainerIndex = containers or NoContainers()

    @classmethod
    def open(cls, root_option: str | os.PathLike[str] | None = None, containers: ContainerIndex | None = None) -> Store:
        """The store at `root_option` (the --root flag), else $OCIRUN_ROOT, else the XDG data dir."""
        store = cls(store_root(root_option), containers)
        try:
            for d in (store.root, store.images_dir, store.tmp_dir, store.locks_dir, store.blobs.blob_dir):
                d.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OcirunError(f"cannot create the image store at {store.root}: {exc.strerror}") from None
        from layers.sites import additional_store_paths

        store.additional = [cls(p) for p in additional_store_paths() if p != store.root]
        return store

    # -- locks ------------------------------------------------------------------------

    def _image_lock(self, image_id: str, blocking: bool = True):
        return file_lock(self.locks_dir / f"image-{hex_of(image_id)}.lock", blocking=blocking)

    def _repos_lock(self):
        return file_lock(self.locks_dir / "repositories.lock")

    def _gc_lock(self, exclusive: bool = False, blocking: bool = True):
        """Pulls hold it shared; blob garbage collection needs it exclusive."""
        return file_lock(self.locks_dir / "gc.lock", shared=not exclusive, blocking=blocking)

    # -- pulling and installing ---------------------------------------------------------

    def pull(self, ref: str, platform: str | None = None, progress: bool | None = None) -> ImageRecord:
        """Pull `ref` (a registry or archive reference) and unpack it; returns its record."""
        from registry.pull import pull_image

        plat = parse_platform(platform) if platform else None
        with self._gc_lock():
            pulled = pull_image(ref, plat, sink=self.blobs, progress=progress)
            return self.install(pulled)

    def load(self, path: str, progress: bool | None = None) -> list[tuple[str | None, ImageRecord]]:
        """Import every image of a `docker save` tarball or OCI layout (dir or tar).

        Returns (familiar `name:tag` or None for an unnamed image, record) per image entry.
        """
        if not os.path.exists(path):
            raise OcirunError(f"open {path}: no such file or directory")
        try:
            from registry.archive import load_archive
        except ModuleNotFoundError as exc:
            if exc.name != "registry.archive":
                raise
            raise OcirunError("loading archives is not available in this build (no registry.archive)") from None
        with self._gc_lock():
            pulled = load_archive(path, sink=self.blobs)
            if not isinstance(pulled, list | tuple):
                pulled = [pulled]
            out = []
            for p in pulled:
                rec = self.install(p)
                out.append((familiar(f"{p.name}:{p.tag}") if p.name and p.tag else None, rec))
            return out

    def install(self, pulled: Any, notice: Callable[[str], None] | None = None,
                prebuilt: Path | None = None) -> ImageRecord:
        """Record a pulled image (a registry.types.PulledImage whose blobs are in self.blobs).

        Unpacks it unless another process already did (or moves in `prebuilt`, a rootfs
        in tmp/ with its `ownership` file beside it); on failure (hostile or corrupt
        image) removes everything of it that no other image uses, then re-raises.
        """
        image_id = pulled.config_digest
        layers = self._layer_specs(pulled)
        try:
            with self._image_lock(image_id):
                idir = self.images_dir / hex_of(image_id)
                if not (idir / META).is_file():
                    self._build(idir, pulled, layers, notice, prebuilt)
        except OcirunError:
            self._discard_failed(pulled)
            raise
        except OSError as exc:
            self._discard_failed(pulled)
            raise OcirunError(f"cannot store image {pulled.config_digest[:19]}: {exc}") from None
        self._tag(pulled)
        rec = self.get(image_id)
        assert rec is not None
        return rec

    def add_image(
        self,
        config: bytes,
        manifest: bytes,
        tags: list[str] | tuple[str, ...] = (),
        tree: Path | None = None,
        source: str = "build",
    ) -> ImageRecord:
        """Store an image made here (`build`, `commit`): config and manifest become blobs
        (the layers must be blobs already), then it is recorded as a pulled image is.

        `tree` is its rootfs, already built in tmp/ (with `ownership` beside it): it is
        moved in instead of unpacking the layers again. `tags` are references to point
        at it once it is complete, so nothing half-stored is ever tagged.
        """
        import hashlib

        from registry.platform import Platform
        from registry.types import PulledImage, iter_layers, parse_json_object

        cfg = parse_json_object(config, "image config")
        man = parse_json_object(manifest, "image manifest")
        config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
        manifest_digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
        self.blobs.ingest_bytes(config_digest, config)
        self.blobs.ingest_bytes(manifest_digest, manifest)
        plat = Platform.of(str(cfg.get("os") or "linux"), str(cfg.get("architecture") or ""),
                           cfg.get("variant") or None)
        pulled = PulledImage(
            name=None, tag=None, repo_digest="", manifest_digest=manifest_digest, manifest=manifest,
            manifest_media_type=str(man.get("mediaType") or ""), config_digest=config_digest,
            config=config, config_json=cfg, layers=list(iter_layers(man)), platform=plat, source=source,
        )
        with self._gc_lock():
            rec = self.install(pulled, prebuilt=tree)
        for ref in tags:
            self.add_tag(ref, rec)
        return self.get(rec.id) or rec

    def set_source(self, record: ImageRecord, source: str) -> ImageRecord:
        """Change where a stored image says it came from (a build step's tree that turns
        out to be the built image itself becomes "build", and is listed)."""
        assert record.path is not None
        with self._image_lock(record.id):
            meta = json.loads((record.path / META).read_text())
            meta["source"] = source
            atomic_write(record.path / META, json.dumps(meta, indent=1).encode())
        return self.get(record.id) or record

    def replace_manifest(self, record: ImageRecord, manifest: bytes) -> ImageRecord:
        """Give a stored image another manifest for the same config and layers (e.g. Docker
        media types instead of OCI ones); the name table follows."""
        import hashlib

        digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
        self.blobs.ingest_bytes(digest, manifest)
        assert record.path is not None
        with self._image_lock(record.id):
            meta = json.loads((record.path / META).read_text())
            meta["manifest_digest"] = digest
            atomic_write(record.path / "manifest.json", manifest)
            atomic_write(record.path / META, json.dumps(meta, indent=1).encode())
        with self._edit_repos() as doc:
            for plats in doc["tags"].values():
                for e in plats.values():
                    if e["id"] == record.id:
                        e["manifest_digest"] = digest
        return self.get(record.id) or record

    def add_tag(self, ref: str, record: ImageRecord) -> str:
        """Point `ref` (`name[:tag]`) at a stored image; returns it as docker shows it."""
        from registry.reference import parse_image_reference

        r = parse_image_reference(ref)
        if r.digest:
            raise OcirunError(f"invalid tag {ref!r}: a tag cannot name a digest")
        tag = r.tag or "latest"
        entry = {
            "id": record.id,
            "manifest_digest": record.manifest_digest,
            "repo_digest": "",
            "platform": record.platform,
            "updated": time.time(),
        }
        with self._edit_repos() as doc:
            doc["tags"].setdefault(f"{r.name}:{tag}", {})[record.platform] = entry
        return familiar(f"{r.name}:{tag}")

    def _layer_specs(self, pulled: Any) -> list[LayerSpec]:
        from layers.unpack import LayerSpec

        diff_ids = list((pulled.config_json.get("rootfs") or {}).get("diff_ids") or [])
        layers = [d for d in pulled.layers if any(m in d.media_type for m in _LAYER_MARKERS) or not d.media_type]
        if diff_ids and len(diff_ids) != len(layers):
            raise OcirunError(
                f"image {pulled.config_digest}: manifest lists {len(layers)} layers "
                f"but the config has {len(diff_ids)} diff_ids"
            )
        return [
            LayerSpec(d.digest, diff_ids[i] if diff_ids else None, d.media_type) for i, d in enumerate(layers)
        ]

    def _build(self, idir: Path, pulled: Any, layers: list[LayerSpec], notice, prebuilt: Path | None = None) -> None:
        """Unpack into tmp/, then rename the pieces into images/<hex>/, meta.json last."""
        rootfs = idir / "rootfs"
        if not rootfs.is_dir() and prebuilt is not None:
            idir.mkdir(parents=True, exist_ok=True)
            own = prebuilt.parent / "ownership"
            if own.exists():
                os.replace(own, idir / "ownership")
            os.replace(prebuilt, rootfs)
            unpack_stats = {}
        elif not rootfs.is_dir():
            from layers.unpack import unpack_layers

            self._clean_staging(pulled.config_digest)
            stage = Path(tempfile.mkdtemp(prefix=f"unpack-{hex_of(pulled.config_digest)}-", dir=self.tmp_dir))
            try:
                stats = unpack_layers(self.blobs, layers, stage / "rootfs", stage / "ownership", notice)
                idir.mkdir(parents=True, exist_ok=True)
                os.replace(stage / "ownership", idir / "ownership")
                os.replace(stage / "rootfs", rootfs)
            finally:
                rmtree(stage)
            unpack_stats = stats.as_dict()
        else:
            unpack_stats = {}
        atomic_write(idir / "config.json", pulled.config)
        atomic_write(idir / "manifest.json", pulled.manifest)
        cfg = pulled.config_json
        meta = {
            "format": 1,
            "id": pulled.config_digest,
            "manifest_digest": pulled.manifest_digest,
            "platform": str(pulled.platform),
            "created": str(cfg.get("created") or ""),
            "layers": [spec.digest for spec in layers],
            "size": tree_size(rootfs),
            "pulled": time.time(),
            "source": getattr(pulled, "source", "registry"),
            "unpack": unpack_stats,
        }
        atomic_write(idir / META, json.dumps(meta, indent=1).encode())

    def _clean_staging(self, image_id: str) -> None:
        """Staging dirs of this image left by a killed process (we hold the image lock)."""
        prefix = f"unpack-{hex_of(image_id)}-"
        for entry in os.scandir(self.tmp_dir):
            if entry.name.startswith(prefix):
                rmtree(entry.path)

    def _discard_failed(self, pulled: Any) -> None:
        """Leave the store as it was: drop the failed image's blobs that nothing else uses."""
        try:
            self._discard_failed_blobs(pulled)
        except (OSError, OcirunError):
            pass  # the original error matters more; prune cleans up the rest

    def _discard_failed_blobs(self, pulled: Any) -> None:
        image_id = pulled.config_digest
        with self._image_lock(image_id):
            idir = self.images_dir / hex_of(image_id)
            if idir.exists() and not (idir / META).exists():
                rmtree(idir)
        keep = self._referenced_blobs()
        mine = {pulled.config_digest, pulled.manifest_digest, pulled.repo_digest}
        mine.update(d.digest for d in pulled.layers)
        for digest in mine - keep:
            with contextlib.suppress(BlobError, OSError):
                self.blobs.remove(digest)

    # -- unpacked trees -----------------------------------------------------------------------

    def ensure_unpacked(self, record: ImageRecord) -> Path:
        """The image's rootfs, unpacking it again from the stored blobs if it is missing."""
        if record.rootfs.is_dir():
            return record.rootfs
        if record.store is not None and record.store != self.root:
            raise OcirunError(f"image {record.short_id} of the read-only store {record.store} has no unpacked tree")
        with self._gc_lock(), self._image_lock(record.id):
            if record.rootfs.is_dir():
                return record.rootfs
            from layers.unpack import LayerSpec, unpack_layers

            diff_ids = list((record.config.get("rootfs") or {}).get("diff_ids") or [])
            specs = [
                LayerSpec(d, diff_ids[i] if i < len(diff_ids) else None) for i, d in enumerate(record.layers)
            ]
            self._clean_staging(record.id)
            stage = Path(tempfile.mkdtemp(prefix=f"unpack-{hex_of(record.id)}-", dir=self.tmp_dir))
            try:
                unpack_layers(self.blobs, specs, stage / "rootfs", stage / "ownership")
                os.replace(stage / "ownership", record.rootfs.parent / "ownership")
                os.replace(stage / "rootfs", record.rootfs)
            finally:
                rmtree(stage)
        return record.rootfs

    # -- containers -----------------------------------------------------------------------------

    def containers_using(self, image_id: str) -> list[str]:
        """Ids of the containers built on this image (as the ContainerIndex says)."""
        return self.containers.using_image(image_id)
