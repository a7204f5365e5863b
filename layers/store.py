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
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from layers import check
from layers.blobs import BlobError, BlobStore, parse_digest
from layers.check import Finding
from layers.unpack import LayerSpec, unpack_layers
from ocirun.errors import OcirunError
from ocirun.util.fs import atomic_write, rmtree, tree_size
from ocirun.util.locks import file_lock
from ocirun.util.log import log
from ocirun.util.paths import store_root

META = "meta.json"
_HEXID = re.compile(r"^[0-9a-f]{1,64}$")
_LAYER_MARKERS = ("tar", "layer")  # media types that carry filesystem layers


def familiar(name: str) -> str:
    """`docker.io/library/busybox:1` -> `busybox:1`, `docker.io/u/x` -> `u/x` (docker's display)."""
    if name.startswith("docker.io/library/"):
        return name[len("docker.io/library/") :]
    if name.startswith("docker.io/"):
        return name[len("docker.io/") :]
    return name


def split_tag(ref: str) -> tuple[str, str]:
    """`host:5000/repo:tag` -> (`host:5000/repo`, `tag`)."""
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > slash:
        return ref[:colon], ref[colon + 1 :]
    return ref, "latest"


def _host_platform():
    from registry.platform import host_platform

    return host_platform()


def _parse_platform(text: str):
    from registry.platform import Platform

    return Platform.parse(text)


@dataclass
class ImageRecord:
    """One stored image (docker's image: identified by its config digest)."""

    id: str  # sha256:<hex> of the config: docker's image id
    repo_tags: list[str]  # familiar names, `busybox:latest`
    manifest_digest: str
    platform: str  # `linux/amd64`, `linux/arm64/v8`
    config: dict[str, Any]
    rootfs: Path
    size: int
    created: str  # the config's creation time (RFC 3339), '' if absent
    repo_digests: list[str] = field(default_factory=list)
    layers: list[str] = field(default_factory=list)
    path: Path | None = None  # images/<hex>
    pulled: float = 0.0
    source: str = ""  # registry, docker-archive, build, build-cache (a build step's tree)
    store: Path | None = None  # the root of the store it is in (the user's or a site store)

    @property
    def short_id(self) -> str:
        return self.id.split(":", 1)[1][:12]

    @property
    def ownership_path(self) -> Path:
        return self.rootfs.parent / "ownership"


@dataclass
class PruneReport:
    deleted: list[str] = field(default_factory=list)  # image ids
    reclaimed: int = 0
    notes: list[str] = field(default_factory=list)


class ContainerIndex(Protocol):
    """What the image store must know of the containers built on its images.

    The containers are the runner's (ocirun.run.containers.ContainerStore implements
    this); the store never reads their files, so their format is the runner's alone.
    """

    def using_image(self, image_id: str) -> list[str]:
        """Ids of the containers built on `image_id`, sorted."""
        ...

    def tree_dirs(self) -> list[str]:
        """The containers' directories (what `system df` counts)."""
        ...

    def check(self, repair: bool) -> list[Finding]:
        """The containers' part of `system check` (layers.check): what is damaged, repaired."""
        ...


class NoContainers:
    """The ContainerIndex of a store without a runner: no image is in use."""

    def using_image(self, image_id: str) -> list[str]:
        return []

    def tree_dirs(self) -> list[str]:
        return []

    def check(self, repair: bool) -> list[Finding]:
        return []


class Store:
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
        return file_lock(self.locks_dir / f"image-{_hex(image_id)}.lock", blocking=blocking)

    def _repos_lock(self):
        return file_lock(self.locks_dir / "repositories.lock")

    def _gc_lock(self, exclusive: bool = False, blocking: bool = True):
        """Pulls hold it shared; blob garbage collection needs it exclusive."""
        return file_lock(self.locks_dir / "gc.lock", shared=not exclusive, blocking=blocking)

    # -- pulling and installing ---------------------------------------------------------

    def pull(self, ref: str, platform: str | None = None, progress: bool | None = None) -> ImageRecord:
        """Pull `ref` (a registry or archive reference) and unpack it; returns its record."""
        from registry.pull import pull_image

        plat = _parse_platform(platform) if platform else None
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
                idir = self.images_dir / _hex(image_id)
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
            self._clean_staging(pulled.config_digest)
            stage = Path(tempfile.mkdtemp(prefix=f"unpack-{_hex(pulled.config_digest)}-", dir=self.tmp_dir))
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
        prefix = f"unpack-{_hex(image_id)}-"
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
            idir = self.images_dir / _hex(image_id)
            if idir.exists() and not (idir / META).exists():
                rmtree(idir)
        keep = self._referenced_blobs()
        mine = {pulled.config_digest, pulled.manifest_digest, pulled.repo_digest}
        mine.update(d.digest for d in pulled.layers)
        for digest in mine - keep:
            with contextlib.suppress(BlobError, OSError):
                self.blobs.remove(digest)

    # -- the name table -------------------------------------------------------------------

    def _read_repos(self) -> dict[str, Any]:
        try:
            data = self.repos_file.read_bytes()
        except FileNotFoundError:
            data = b"{}"
        try:
            return check.parse_repositories(data)
        except ValueError as exc:
            raise check.damaged(f"the image name table {self.repos_file}", str(exc)) from None

    @contextlib.contextmanager
    def _edit_repos(self) -> Iterator[dict[str, Any]]:
        """Edit the name table; a damaged one is rebuilt first (see layers/check.py), and
        the previous good version is kept as repositories.json.bak for such a rebuild."""
        with self._repos_lock():
            try:
                doc = self._read_repos()
            except check.DamagedStateError as exc:
                doc, source = check.recover_repositories(self)
                check.set_aside(self.repos_file)
                log.warning(f"{exc.message.partition(': run')[0]}: rebuilt from {source}, kept as repositories.json.damaged")
            else:
                check.keep_backup(self)
            yield doc
            atomic_write(self.repos_file, json.dumps(doc, indent=1, sort_keys=True).encode())

    def _tag(self, pulled: Any) -> None:
        entry = {
            "id": pulled.config_digest,
            "manifest_digest": pulled.manifest_digest,
            "repo_digest": pulled.repo_digest,
            "platform": str(pulled.platform),
            "updated": time.time(),
        }
        if pulled.name is None:
            return
        with self._edit_repos() as doc:
            if pulled.tag:
                doc["tags"].setdefault(f"{pulled.name}:{pulled.tag}", {})[str(pulled.platform)] = entry
            if pulled.repo_digest:
                doc["digests"][f"{pulled.name}@{pulled.repo_digest}"] = {
                    **doc["digests"].get(f"{pulled.name}@{pulled.repo_digest}", {}),
                    str(pulled.platform): entry,
                }

    def add_repo_digest(self, rec: ImageRecord, name: str, digest: str) -> None:
        """Record `name@digest`: the registry now holds the image under that digest (a push)."""
        entry = {"id": rec.id, "manifest_digest": rec.manifest_digest, "repo_digest": digest,
                 "platform": rec.platform, "updated": time.time()}
        with self._edit_repos() as doc:
            doc["digests"].setdefault(f"{name}@{digest}", {})[rec.platform] = entry
            for key, plats in doc["tags"].items():  # `images --digests` shows it on the tags
                if key.startswith(name + ":") and plats.get(rec.platform, {}).get("id") == rec.id:
                    plats[rec.platform]["repo_digest"] = digest

    # -- lookups ----------------------------------------------------------------------------

    def get(self, image_id: str) -> ImageRecord | None:
        """The complete image with this full id, or None."""
        idir = self.images_dir / _hex(image_id)
        if not (idir / META).exists():
            return None
        meta, config = check.read_image_records(idir)
        tags, digests = self._names_of(meta["id"], self._read_repos())
        return ImageRecord(
            id=meta["id"],
            repo_tags=tags,
            manifest_digest=meta.get("manifest_digest", ""),
            platform=meta.get("platform", ""),
            config=config,
            rootfs=idir / "rootfs",
            size=int(meta.get("size", 0)),
            created=meta.get("created", ""),
            repo_digests=digests,
            layers=list(meta.get("layers", [])),
            path=idir,
            pulled=float(meta.get("pulled", 0)),
            source=str(meta.get("source", "")),
            store=self.root,
        )

    def _get_or_warn(self, image_id: str) -> ImageRecord | None:
        """get(), but a damaged image is a warning line, not the end of a listing."""
        try:
            return self.get(image_id)
        except check.DamagedStateError as exc:
            log.warning(exc.message)
            return None

    @staticmethod
    def _names_of(image_id: str, doc: dict[str, Any]) -> tuple[list[str], list[str]]:
        tags = sorted(
            familiar(name) for name, plats in doc["tags"].items() if any(e["id"] == image_id for e in plats.values())
        )
        digests = sorted(
            familiar(name) for name, plats in doc["digests"].items() if any(e["id"] == image_id for e in plats.values())
        )
        return tags, digests

    def image_ids(self) -> list[str]:
        """Ids of complete images."""
        if not self.images_dir.is_dir():
            return []
        out = []
        for entry in os.scandir(self.images_dir):
            if _HEXID.match(entry.name) and len(entry.name) == 64 and os.path.isfile(os.path.join(entry.path, META)):
                out.append("sha256:" + entry.name)
        return out

    def list_images(self) -> list[ImageRecord]:
        """Every complete image, newest pull first."""
        recs = [r for r in (self._get_or_warn(i) for i in self.image_ids()) if r is not None]
        return sorted(recs, key=lambda r: r.pulled, reverse=True)

    def table_rows(self) -> list[tuple[str, str, ImageRecord, str]]:
        """(repository, tag, image, manifest digest) rows for `ocirun images`, one per tag+platform."""
        doc = self._read_repos()
        recs = {r.id: r for r in self.list_images()}
        rows = []
        tagged = set()
        for name, plats in doc["tags"].items():
            repo, tag = split_tag(name)
            for entry in plats.values():
                rec = recs.get(entry["id"])
                if rec is not None:
                    rows.append((familiar(repo), tag, rec, entry.get("repo_digest", "")))
                    tagged.add(rec.id)
        for rec in recs.values():
            if rec.id not in tagged and rec.source != "build-cache":  # build steps: hidden, as docker's
                dig = rec.repo_digests[0].partition("@")[2] if rec.repo_digests else ""
                repo = rec.repo_digests[0].partition("@")[0] if rec.repo_digests else "<none>"
                rows.append((repo, "<none>", rec, dig))
        rows.sort(key=lambda r: r[2].pulled, reverse=True)
        return rows

    def resolve(self, ref_or_id: str, platform: str | None = None) -> ImageRecord | None:
        """Find a stored image by full id, `name:tag`, `name@digest`, or a unique id prefix."""
        text = ref_or_id.strip()
        if not text:
            return None
        if text.startswith("sha256:") and len(text) == 71:
            rec = self.get(text)
            if rec is not None:
                return rec
        doc = self._read_repos()
        entries = self._by_name(text, doc)
        if entries:
            entry = self._pick_platform(entries, platform)
            if entry is not None:
                return self.get(entry["id"])
            return None
        prefix = text.removeprefix("sha256:")
        if _HEXID.match(prefix):
            matches = [i for i in self.image_ids() if i[7:].startswith(prefix)]
            if len(matches) == 1:
                return self.get(matches[0])
            if len(matches) > 1:
                raise OcirunError(f"image id prefix {prefix!r} is ambiguous ({len(matches)} images)")
        return None

    def _by_name(self, text: str, doc: dict[str, Any]) -> dict[str, dict[str, Any]] | None:
        """{platform: entry} for a reference, or None when it names nothing stored."""
        try:
            from registry.reference import Reference, parse_image_reference

            ref: Reference = parse_image_reference(text)
        except OcirunError:
            return None
        if ref.digest:
            hit = doc["digests"].get(f"{ref.name}@{ref.digest}")
            if hit:
                return hit
            found = {}
            for plats in doc["tags"].values():
                for plat, e in plats.items():
                    if e.get("manifest_digest") == ref.digest and e["id"]:
                        found[plat] = e
            return found or None
        return doc["tags"].get(f"{ref.name}:{ref.tag}")

    @staticmethod
    def _pick_platform(entries: dict[str, dict[str, Any]], platform: str | None) -> dict[str, Any] | None:
        """The entry for `platform` (best match), or for the host, or the newest."""
        from registry.platform import Platform, select

        cands = []
        for plat_text, entry in entries.items():
            try:
                cands.append((Platform.parse(plat_text), entry))
            except OcirunError:
                continue
        if platform:
            return select(_parse_platform(platform), cands)
        best = select(_host_platform(), cands)
        if best is not None:
            return best
        return max(entries.values(), key=lambda e: e.get("updated", 0), default=None)

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
            diff_ids = list((record.config.get("rootfs") or {}).get("diff_ids") or [])
            specs = [
                LayerSpec(d, diff_ids[i] if i < len(diff_ids) else None) for i, d in enumerate(record.layers)
            ]
            self._clean_staging(record.id)
            stage = Path(tempfile.mkdtemp(prefix=f"unpack-{_hex(record.id)}-", dir=self.tmp_dir))
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

    # -- removal -----------------------------------------------------------------------------------

    def remove(self, ref: str, force: bool = False) -> list[str]:
        """`rmi`: untag a name (deleting the image when no tag is left) or delete by id.

        Returns docker's lines (`Untagged: ...`, `Deleted: ...`). Refuses, unless
        `force`, when a container uses an image that would be deleted.
        """
        doc = self._read_repos()
        named = self._by_name(ref, doc)
        if named:
            key = self._name_key(ref, doc)
            ids = {e["id"] for e in named.values()}
            with self._edit_repos() as doc:
                remaining = self._after_untag(doc, key)
                doomed = [i for i in ids if not self._names_of(i, remaining)[0]]
                self._refuse_if_used(doomed, ref, force)
                doc.clear()
                doc.update(remaining)
            lines = [f"Untagged: {familiar(key)}"]
        else:
            rec = self.resolve(ref)
            if rec is None:
                raise OcirunError(f"No such image: {ref}")
            repos = {split_tag(t)[0] for t in rec.repo_tags}
            if len(repos) > 1 and not force:
                raise OcirunError(
                    f"conflict: unable to delete {rec.short_id} (must be forced) - "
                    "image is referenced in multiple repositories"
                )
            self._refuse_if_used([rec.id], ref, force)
            with self._edit_repos() as doc:
                lines = [f"Untagged: {t}" for t in rec.repo_tags + rec.repo_digests]
                self._drop_id(doc, rec.id)
            doomed = [rec.id]
        doc = self._read_repos()
        for image_id in doomed:
            if not self._names_of(image_id, doc)[0] and self._delete_image(image_id):
                lines.append(f"Deleted: {image_id}")
        self._gc_blobs()
        return lines

    def _name_key(self, ref: str, doc: dict[str, Any]) -> str:
        from registry.reference import parse_image_reference

        r = parse_image_reference(ref)
        if r.digest:
            return f"{r.name}@{r.digest}"
        return f"{r.name}:{r.tag}"

    @staticmethod
    def _after_untag(doc: dict[str, Any], key: str) -> dict[str, Any]:
        out = json.loads(json.dumps(doc))
        if "@" in key:
            digest = key.partition("@")[2]
            out["digests"].pop(key, None)
            for name in list(out["tags"]):
                plats = out["tags"][name]
                for p in [p for p, e in plats.items() if e.get("manifest_digest") == digest]:
                    del plats[p]
                if not plats:
                    del out["tags"][name]
        else:
            out["tags"].pop(key, None)
        return out

    @staticmethod
    def _drop_id(doc: dict[str, Any], image_id: str) -> None:
        for table in (doc["tags"], doc["digests"]):
            for name in list(table):
                plats = table[name]
                for p in [p for p, e in plats.items() if e["id"] == image_id]:
                    del plats[p]
                if not plats:
                    del table[name]

    def _refuse_if_used(self, image_ids: list[str], ref: str, force: bool) -> None:
        if force:
            return
        for image_id in image_ids:
            users = self.containers_using(image_id)
            if users:
                raise OcirunError(
                    f"conflict: unable to remove {ref} (must be forced) - "
                    f"container {users[0][:12]} is using its referenced image {_hex(image_id)[:12]}"
                )

    def _delete_image(self, image_id: str) -> bool:
        """Rename the image dir away (atomic), then delete it. False if it was not there."""
        with self._image_lock(image_id):
            idir = self.images_dir / _hex(image_id)
            if not idir.exists():
                return False
            doomed = Path(tempfile.mkdtemp(prefix=f"delete-{_hex(image_id)}-", dir=self.tmp_dir))
            os.replace(idir, doomed / "image")
            rmtree(doomed)
        self._drop_dangling_digests(image_id)
        return True

    def _drop_dangling_digests(self, image_id: str) -> None:
        if image_id in self.image_ids():
            return
        with self._edit_repos() as doc:
            self._drop_id(doc, image_id)

    # -- garbage collection ----------------------------------------------------------------------

    def _referenced_blobs(self) -> set[str]:
        keep: set[str] = set()
        for image_id in self.image_ids():
            try:
                meta = json.loads((self.images_dir / _hex(image_id) / META).read_text())
            except (OSError, ValueError):
                continue
            keep.add(meta["id"])
            keep.add(meta.get("manifest_digest", ""))
            keep.update(meta.get("layers", []))
        doc = self._read_repos()
        for table in (doc["tags"], doc["digests"]):
            for plats in table.values():
                for e in plats.values():
                    if e["id"] in keep:
                        keep.add(e.get("repo_digest", ""))
                        keep.add(e.get("manifest_digest", ""))
        keep.discard("")
        return keep

    def _gc_blobs(self) -> tuple[int, int]:
        """Delete blobs no complete image uses, unless a pull is running. (count, bytes)."""
        count = freed = 0
        with self._gc_lock(exclusive=True, blocking=False) as got:
            if not got:
                return 0, 0
            keep = self._referenced_blobs()
            for digest in list(self.blobs.digests()):
                if digest not in keep:
                    freed += self.blobs.remove(digest)
                    count += 1
        return count, freed

    def prune(self, all_images: bool = False) -> PruneReport:
        """Delete dangling (untagged) images — all unused ones with `all_images` — unused
        blobs, and what killed processes left in tmp/ and images/."""
        report = PruneReport()
        doc = self._read_repos()
        for image_id in self.image_ids():
            tags, _ = self._names_of(image_id, doc)
            if (tags and not all_images) or self.containers_using(image_id):
                continue
            rec = self._get_or_warn(image_id)
            size = rec.size if rec else 0
            with self._edit_repos() as d:
                self._drop_id(d, image_id)
            if self._delete_image(image_id):
                report.deleted.append(image_id)
                report.reclaimed += size
        report.reclaimed += self._prune_leftovers()
        n, freed = self._gc_blobs()
        report.reclaimed += freed
        if n:
            report.notes.append(f"deleted {n} unused blob(s)")
        return report

    def _prune_leftovers(self) -> int:
        """Staging/deleting dirs and incomplete images whose lock is free, unlocked partials."""
        freed = 0
        if self.tmp_dir.is_dir():
            for entry in os.scandir(self.tmp_dir):
                m = re.match(r"^(unpack|delete)-([0-9a-f]{64})-", entry.name)
                if not m:
                    continue
                with self._image_lock("sha256:" + m.group(2), blocking=False) as got:
                    if got:
                        freed += tree_size(entry.path)
                        rmtree(entry.path)
        if self.images_dir.is_dir():
            for entry in os.scandir(self.images_dir):
                if os.path.exists(os.path.join(entry.path, META)) or not _HEXID.match(entry.name):
                    continue
                with self._image_lock("sha256:" + entry.name, blocking=False) as got:
                    if got and not os.path.exists(os.path.join(entry.path, META)):
                        freed += tree_size(entry.path)
                        rmtree(entry.path)
        partial = self.blobs.partial_dir
        if partial.is_dir():
            for entry in os.scandir(partial):
                m = re.match(r"^(sha256|sha512)-([0-9a-f]+)$", entry.name)
                if m:
                    try:
                        with file_lock(self.locks_dir / f"blob-{m.group(1)}-{m.group(2)}.lock", blocking=False) as got:
                            if got:
                                freed += entry.stat().st_size
                                os.unlink(entry.path)
                    except OSError:
                        continue
                elif entry.name.startswith("ingest-"):
                    with contextlib.suppress(OSError):
                        if time.time() - entry.stat().st_mtime > 3600:
                            freed += entry.stat().st_size
                            os.unlink(entry.path)
        return freed

    def df(self) -> dict[str, dict[str, int]]:
        """Disk use: images (unpacked trees), containers, blobs, temporary files."""
        recs = self.list_images()
        active = [r for r in recs if self.containers_using(r.id)]
        containers = self.containers.tree_dirs()
        blob_sizes = [self.blobs.size(d) for d in self.blobs.digests()]
        keep = self._referenced_blobs()
        unused_blobs = sum(self.blobs.size(d) for d in self.blobs.digests() if d not in keep)
        tmp = tree_size(self.tmp_dir) if self.tmp_dir.is_dir() else 0
        return {
            "Images": {
                "total": len(recs),
                "active": len(active),
                "size": sum(r.size for r in recs),
                "reclaimable": sum(r.size for r in recs if r not in active),
            },
            "Containers": {
                "total": len(containers),
                "active": len(containers),
                "size": sum(tree_size(c) for c in containers),
                "reclaimable": 0,
            },
            "Layer blobs": {
                "total": len(blob_sizes),
                "active": len(blob_sizes) - len([d for d in self.blobs.digests() if d not in keep]),
                "size": sum(blob_sizes),
                "reclaimable": unused_blobs,
            },
            "Temporary": {"total": self._count_tmp(), "active": 0, "size": tmp, "reclaimable": tmp},
        }


    def _count_tmp(self) -> int:
        """Staging dirs and partial downloads in tmp/."""
        if not self.tmp_dir.is_dir():
            return 0
        n = len([e for e in os.listdir(self.tmp_dir) if e != "partial"])
        if self.blobs.partial_dir.is_dir():
            n += len(os.listdir(self.blobs.partial_dir))
        return n


def _hex(image_id: str) -> str:
    """The hex part of an image id, validated (it becomes a directory name)."""
    if ":" not in image_id:
        image_id = "sha256:" + image_id
    return parse_digest(image_id)[1]
