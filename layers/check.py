"""Damaged store state: find it (`ocirun system check`) and repair it (`--repair`).

What can be damaged outside ocirun's control (a disk error, an editor, another tool;
ocirun itself writes every record to a temporary name and renames it in) and what
the repair does:

  repositories.json   rebuilt from its last good copy (repositories.json.bak, kept by
                      every edit), entries of images that are not complete dropped
  images/<hex>/       config.json, manifest.json and meta.json rebuilt from the verified
                      blobs; an image that cannot be rebuilt and that no container uses
                      is deleted (its tree is a copy of blobs, pull again)
  blobs/              a blob whose content does not match its digest is deleted
  containers/         the runner's (ocirun.run.check), through the store's ContainerIndex

Nothing is changed without --repair; with it, every change is reported.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from layers.blobs import digest_file, parse_digest
from ocirun.errors import OcirunError
from ocirun.util.fs import atomic_write, tree_size
from ocirun.util.records import dataclass

TYPE_CHECKING = False  # typing's, without importing typing (start-up time)
if TYPE_CHECKING:
    from typing import Any

REPAIR_HINT = "run 'ocirun system check --repair'"


class DamagedStateError(OcirunError):
    """A store record cannot be read: the message names it and how to repair it."""


def damaged(what: str, reason: str) -> DamagedStateError:
    return DamagedStateError(f"{what} is damaged ({reason}): {REPAIR_HINT}")


@dataclass
class Finding:
    """One damaged thing: what, why, and what the repair does (or did)."""

    what: str
    problem: str
    action: str
    repaired: bool = False

    def line(self) -> str:
        done = "repaired: " if self.repaired else "repair would: "
        return f"{self.what}: {self.problem}; {done}{self.action}"


# -- repositories.json -----------------------------------------------------------------


def parse_repositories(data: bytes) -> dict[str, Any]:
    """The name table, checked for the shape the store relies on; ValueError if not."""
    doc = json.loads(data)
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")
    doc.setdefault("format", 1)
    for table in ("tags", "digests"):
        entries = doc.setdefault(table, {})
        if not isinstance(entries, dict):
            raise ValueError(f"{table!r} is not an object")
        for name, plats in entries.items():
            if not isinstance(plats, dict) or not all(isinstance(e, dict) and isinstance(e.get("id"), str) for e in plats.values()):
                raise ValueError(f"bad entry for {name!r}")
    return doc


def recover_repositories(store: Any) -> tuple[dict[str, Any], str]:
    """A trustworthy name table: the last good copy (or an empty one) without the
    entries of images that are not complete. Returns (doc, what was used)."""
    doc, source = {"format": 1, "tags": {}, "digests": {}}, "an empty table"
    try:
        doc, source = parse_repositories(backup_path(store).read_bytes()), f"its last good copy {backup_path(store).name}"
    except (OSError, ValueError):
        pass
    complete = set(store.image_ids())
    for table in ("tags", "digests"):
        for name in list(doc[table]):
            plats = {p: e for p, e in doc[table][name].items() if e["id"] in complete}
            if plats:
                doc[table][name] = plats
            else:
                del doc[table][name]
    return doc, source


def backup_path(store: Any) -> Path:
    return store.repos_file.with_name(store.repos_file.name + ".bak")


def keep_backup(store: Any) -> None:
    """Keep the current (good) name table as repositories.json.bak: a hard link, so
    readers never see the table missing and the next write replaces only the name."""
    tmp = backup_path(store).with_name(f".repositories.json.bak.{os.getpid()}")
    try:
        os.link(store.repos_file, tmp)
        os.replace(tmp, backup_path(store))
    except FileNotFoundError:
        pass
    finally:
        tmp.unlink(missing_ok=True)


def set_aside(path: Path) -> Path:
    """Rename a damaged file to <name>.damaged (the newest damaged copy wins)."""
    dest = path.with_name(path.name + ".damaged")
    os.replace(path, dest)
    return dest


def _check_repositories(store: Any, repair: bool) -> list[Finding]:
    try:
        parse_repositories(store.repos_file.read_bytes())
        return []
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        problem = f"unreadable ({exc})"
    f = Finding(str(store.repos_file), problem, "rebuild it from its last good copy and the complete images")
    if repair:
        with store._repos_lock():
            doc, source = recover_repositories(store)
            set_aside(store.repos_file)
            atomic_write(store.repos_file, json.dumps(doc, indent=1, sort_keys=True).encode())
        f.action, f.repaired = f"rebuilt from {source} (the damaged file is kept as repositories.json.damaged)", True
    return [f]


# -- blobs -----------------------------------------------------------------------------


def _check_blobs(store: Any, repair: bool) -> list[Finding]:
    out = []
    for digest in list(store.blobs.digests()):
        path = store.blobs.path(digest)
        try:
            got = digest_file(path, parse_digest(digest)[0])
        except OSError as exc:
            got = f"unreadable: {exc.strerror}"
        if got == digest:
            continue
        f = Finding(f"blob {digest}", f"content does not match (it hashes to {got})", "delete it (pull again to restore it)")
        if repair:
            store.blobs.remove(digest)
            f.action, f.repaired = "deleted (pull the image again to restore it)", True
        out.append(f)
    return out


# -- images ----------------------------------------------------------------------------


def _read_json(path: Path) -> Any:
    return json.loads(path.read_bytes())


def _blob_json(store: Any, digest: str) -> tuple[bytes, Any] | None:
    """A blob's bytes and parsed JSON, if present and verified."""
    try:
        path = store.blobs.path(digest)
        data = path.read_bytes()
        if digest_file(path, parse_digest(digest)[0]) != digest:
            return None
        return data, json.loads(data)
    except (OSError, ValueError, OcirunError):
        return None


def read_image_records(idir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """An image's (meta, config), or DamagedStateError saying what is wrong with them."""
    docs = []
    for name in ("meta.json", "config.json"):
        try:
            doc = _read_json(idir / name)
        except FileNotFoundError:
            raise damaged(f"image {idir.name[:12]}", f"{name} is missing") from None
        except (OSError, ValueError) as exc:
            raise damaged(f"image {idir.name[:12]}", f"{name} is unreadable: {exc}") from None
        if not isinstance(doc, dict):
            raise damaged(f"image {idir.name[:12]}", f"{name} is not a JSON object")
        docs.append(doc)
    meta, config = docs
    if meta.get("id") != "sha256:" + idir.name or not isinstance(meta.get("layers", []), list):
        raise damaged(f"image {idir.name[:12]}", "meta.json does not describe this image")
    return meta, config


def image_problem(idir: Path) -> str | None:
    """Why an image's records cannot be used, or None."""
    try:
        read_image_records(idir)
    except DamagedStateError as exc:
        return exc.message.partition(" is damaged (")[2].rpartition("): run")[0]
    return None


def _manifest_for(store: Any, image_id: str, idir: Path) -> tuple[bytes, str, Any] | None:
    """The image's manifest (bytes, digest, doc): its own copy, else a stored blob."""
    import hashlib

    try:
        data = (idir / "manifest.json").read_bytes()
        doc = json.loads(data)
        if (doc.get("config") or {}).get("digest") == image_id:
            return data, "sha256:" + hashlib.sha256(data).hexdigest(), doc
    except (OSError, ValueError, AttributeError):
        pass
    for digest in store.blobs.digests():
        if store.blobs.size(digest) > 4 << 20:
            continue
        got = _blob_json(store, digest)
        if got and isinstance(got[1], dict) and (got[1].get("config") or {}).get("digest") == image_id:
            return got[0], digest, got[1]
    return None


def rebuild_image_records(store: Any, image_id: str, idir: Path) -> bool:
    """Write config.json, manifest.json and meta.json again from verified blobs."""
    cfg = _blob_json(store, image_id)
    man = _manifest_for(store, image_id, idir)
    if cfg is None or man is None or not isinstance(cfg[1], dict):
        return False
    man_bytes, man_digest, man_doc = man
    layers = [d["digest"] for d in man_doc.get("layers") or [] if isinstance(d, dict) and "digest" in d]
    arch, variant = cfg[1].get("architecture", ""), cfg[1].get("variant")
    meta = {
        "format": 1, "id": image_id, "manifest_digest": man_digest,
        "platform": "/".join(p for p in (cfg[1].get("os", "linux"), arch, variant) if p),
        "created": str(cfg[1].get("created") or ""), "layers": layers,
        "size": tree_size(idir / "rootfs") if (idir / "rootfs").is_dir() else 0,
        "pulled": os.stat(idir).st_mtime, "source": "rebuilt", "unpack": {},
    }
    atomic_write(idir / "config.json", cfg[0])
    atomic_write(idir / "manifest.json", man_bytes)
    atomic_write(idir / "meta.json", json.dumps(meta, indent=1).encode())
    return True


def _check_images(store: Any, repair: bool) -> list[Finding]:
    out = []
    if not store.images_dir.is_dir():
        return out
    for entry in sorted(os.scandir(store.images_dir), key=lambda e: e.name):
        idir = Path(entry.path)
        if len(entry.name) != 64 or not os.path.lexists(idir / "meta.json"):
            continue  # not an image, or an unfinished pull (prune removes those)
        problem = image_problem(idir)
        if problem is None:
            continue
        image_id = "sha256:" + entry.name
        f = Finding(f"image {entry.name[:12]}", problem, "rebuild its records from the blobs, else delete it")
        if repair:
            with store._image_lock(image_id):
                f.repaired = True
                if rebuild_image_records(store, image_id, idir):
                    f.action = "records rebuilt from the blobs"
                elif store.containers_using(image_id):
                    f.action, f.repaired = "kept: a container uses it and its blobs are gone (pull it again)", False
                else:
                    (idir / "meta.json").unlink(missing_ok=True)
                    f.action = "deleted (pull it again)"
            if f.action.startswith("deleted"):
                store._delete_image(image_id)
        out.append(f)
    return out


# -- the whole store ---------------------------------------------------------------------

CHECKS: list[tuple[str, Callable[[Any, bool], list[Finding]]]] = [
    ("blobs", _check_blobs),
    ("images", _check_images),
    ("repositories", _check_repositories),
    ("containers", lambda store, repair: store.containers.check(repair)),
]


def check_site_stores(store: Any) -> list[Finding]:
    """Damage in the read-only site stores this user searches (layers/sites.py): found
    and reported, never repaired from here; the store's owner can repair it."""
    out: list[Finding] = []
    for site in store.additional:
        if not site.images_dir.is_dir():
            continue
        owner_fix = f"its owner runs 'ocirun --root {site.root} system check --repair' to"
        for name, check in CHECKS:
            if name == "containers":  # a site store's users keep their containers in their own stores
                continue
            for f in check(site, False):
                out.append(Finding(f"site store {site.root}: {f.what}", f.problem, f"{owner_fix} {f.action}"))
    return out


def check_store(store: Any, repair: bool = False) -> list[Finding]:
    """Every damaged thing in the store; with `repair`, repaired as the module says.

    Repairs hold the store's garbage-collection lock exclusively: no pull runs meanwhile."""
    if not repair:
        return [f for _name, check in CHECKS for f in check(store, False)]
    with store._gc_lock(exclusive=True, blocking=False) as got:
        if not got:
            raise OcirunError("another ocirun command is pulling or loading into this store: try again when it is done")
        return [f for _name, check in CHECKS for f in check(store, True)]

