"""Removing images (`rmi`), pruning, garbage-collecting blobs and `system df`:
part of layers.store.Store."""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
import time
from pathlib import Path

from layers.records import (
    HEXID,
    META,
    PruneReport,
    familiar,
    hex_of,
    split_tag,
)
from ocirun.errors import OcirunError
from ocirun.util.fs import rmtree, tree_size
from ocirun.util.locks import file_lock

TYPE_CHECKING = False  # typing's, without importing typing (start-up time)
if TYPE_CHECKING:
    from typing import Any


class Removal:
    """Part of Store (layers/store.py): what leaves the store, and what it takes."""

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
                    f"container {users[0][:12]} is using its referenced image {hex_of(image_id)[:12]}"
                )

    def _delete_image(self, image_id: str) -> bool:
        """Rename the image dir away (atomic), then delete it. False if it was not there."""
        with self._image_lock(image_id):
            idir = self.images_dir / hex_of(image_id)
            if not idir.exists():
                return False
            doomed = Path(tempfile.mkdtemp(prefix=f"delete-{hex_of(image_id)}-", dir=self.tmp_dir))
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
                meta = json.loads((self.images_dir / hex_of(image_id) / META).read_text())
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
                if os.path.exists(os.path.join(entry.path, META)) or not HEXID.match(entry.name):
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
