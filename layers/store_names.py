"""The name table of the image store (repositories.json) and the look-ups by name,
id or digest: part of layers.store.Store."""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator

from layers import check
from layers.records import (
    HEXID,
    META,
    ImageRecord,
    familiar,
    hex_of,
    host_platform,
    parse_platform,
    split_tag,
)
from ocirun.errors import OcirunError
from ocirun.util.fs import atomic_write
from ocirun.util.log import log

TYPE_CHECKING = False  # typing's, without importing typing (start-up time)
if TYPE_CHECKING:
    from typing import Any


class NameTable:
    """Part of Store (layers/store.py): names -> images."""

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
        idir = self.images_dir / hex_of(image_id)
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
            if HEXID.match(entry.name) and len(entry.name) == 64 and os.path.isfile(os.path.join(entry.path, META)):
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
        if HEXID.match(prefix):
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
            return select(parse_platform(platform), cands)
        best = select(host_platform(), cands)
        if best is not None:
            return best
        return max(entries.values(), key=lambda e: e.get("updated", 0), default=None)
