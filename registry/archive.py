"""Archive sources: `docker save` tarballs and OCI image layouts (directory or tar).

`load_archive(path, sink)` imports everything an archive names (`ocirun load -i FILE`);
`pull_archive(ref, platform, sink)` resolves one image for `docker-archive:PATH[:ref]`,
`oci:PATH[:ref]` and `oci-archive:PATH[:ref]` (reached through registry.pull.pull_image).

Nothing from an archive is trusted: every blob is hashed while it is copied into the
sink and must match its digest (an OCI blob's name, a docker-archive config's file
name, a layer's `blobs/sha256/HEX` name or, for old `HEX/layer.tar` layers, the
config's diff_id). Tar member names with `..` or absolute paths are never followed.

docker-archive images get a synthesized Docker schema-2 manifest (docker does the
same on load), so every PulledImage has manifest bytes and a manifest digest.
"""

from __future__ import annotations

import json
import posixpath
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ocirun.errors import OcirunError
from registry.archive_source import (
    Source,
    clean_rel,
    ingest,
    open_source,
    store_digest_of,
    verified_read,
)
from registry.config import RegistryConfig
from registry.manifest import check_platform, choose_manifest, is_attestation, read_config
from registry.platform import Platform, host_platform
from registry.reference import ArchiveReference, parse_image_reference
from registry.types import (
    DOCKER_CONFIG,
    DOCKER_LAYER_GZIP,
    DOCKER_LAYER_TAR,
    DOCKER_MANIFEST,
    INDEX_TYPES,
    OCI_LAYER_ZSTD,
    BlobSink,
    Descriptor,
    PulledImage,
    parse_json_object,
    parse_manifest,
)

REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"
_BLOB_PATH = re.compile(r"^blobs/sha256/([a-f0-9]{64})$")
_HEX_JSON = re.compile(r"^([a-f0-9]{64})\.json$")


def _name_tag(text: str | None) -> tuple[str | None, str | None]:
    """A RepoTag or ref name -> (canonical name, tag); a bare tag gives (None, tag)."""
    if not text:
        return None, None
    if "/" not in text and ":" not in text and "@" not in text:
        return None, text
    try:
        ref = parse_image_reference(text, RegistryConfig())
    except OcirunError:
        return None, text
    return ref.name, ref.tag


# ---------------------------------------------------------------- docker save


@dataclass
class _DockerEntry:
    config: str
    layers: list[str]
    repo_tags: list[str]


def _docker_entries(src: Source) -> list[_DockerEntry]:
    raw = json.loads(src.read("manifest.json"))
    if not isinstance(raw, list):
        raise OcirunError(f"{src.label}: manifest.json is not a list")
    return [_DockerEntry(str(e["Config"]), [str(x) for x in e.get("Layers") or []], list(e.get("RepoTags") or [])) for e in raw]


def _layer_type(head: bytes) -> str:
    """A docker-archive layer's media type from its first bytes."""
    if head[:2] == b"\x1f\x8b":
        return DOCKER_LAYER_GZIP
    if head[:4] == b"\x28\xb5\x2f\xfd":
        return OCI_LAYER_ZSTD
    return DOCKER_LAYER_TAR


def _load_docker_entry(src: Source, entry: _DockerEntry, sink: BlobSink, source: str) -> tuple[PulledImage, list[str]]:
    """Store one docker-archive image; returns it (unnamed) and its RepoTags."""
    cfg_name = posixpath.basename(entry.config)
    m = _HEX_JSON.match(cfg_name) or _BLOB_PATH.match(clean_rel(entry.config))
    if not m:
        raise OcirunError(f"{src.label}: config {entry.config!r} is not named by its sha256")
    config_digest = "sha256:" + m.group(1)
    config = verified_read(src, entry.config, config_digest)
    config_json = parse_json_object(config, f"image config {config_digest}")
    store_digest_of(sink, config)
    diff_ids = list((config_json.get("rootfs") or {}).get("diff_ids") or [])
    if len(diff_ids) != len(entry.layers):
        raise OcirunError(f"{src.label}: {len(entry.layers)} layers but the config lists {len(diff_ids)} diff_ids")
    layers = []
    for rel, diff_id in zip(entry.layers, diff_ids, strict=True):
        bm = _BLOB_PATH.match(clean_rel(rel))
        digest = "sha256:" + bm.group(1) if bm else diff_id  # old layout: layer.tar is the diff
        size = src.size(rel)
        mt = _layer_type(ingest(src, rel, digest, sink, size))
        if mt == DOCKER_LAYER_TAR and digest != diff_id:
            raise OcirunError(f"blob {digest} does not match its digest (config diff_id {diff_id})")
        layers.append(Descriptor(mt, digest, size))
    manifest = {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": DOCKER_CONFIG, "size": len(config), "digest": config_digest},
        "layers": [{"mediaType": d.media_type, "size": d.size, "digest": d.digest} for d in layers],
    }
    mbytes = json.dumps(manifest, indent=3).encode()
    mdigest = store_digest_of(sink, mbytes)
    img = PulledImage(
        name=None, tag=None, repo_digest=mdigest, manifest_digest=mdigest, manifest=mbytes,
        manifest_media_type=DOCKER_MANIFEST, config_digest=config_digest, config=config,
        config_json=config_json, layers=layers, platform=Platform.from_json(config_json), source=source,
    )
    return img, entry.repo_tags


def _named(img: PulledImage, text: str | None) -> PulledImage:
    from dataclasses import replace

    name, tag = _name_tag(text)
    return replace(img, name=name, tag=tag)


# ---------------------------------------------------------------- OCI layouts


def _oci_index(src: Source) -> dict[str, Any]:
    if not src.exists("index.json"):
        raise OcirunError(f"{src.label} is not an OCI image layout (no index.json)")
    return parse_json_object(src.read("index.json"), f"{src.label}: index.json")


def _blob_rel(digest: str) -> str:
    algo, _, hexd = digest.partition(":")
    if algo != "sha256" or not re.fullmatch(r"[a-f0-9]{64}", hexd):
        raise OcirunError(f"unsupported digest {digest!r}")
    return f"blobs/{algo}/{hexd}"


def _entry_name(desc: Descriptor) -> str | None:
    return desc.annotations.get(CONTAINERD_NAME) or desc.annotations.get(REF_NAME)


def _load_oci_entry(src: Source, desc: Descriptor, platform: Platform | None, sink: BlobSink, source: str, label: str, strict: bool = True) -> PulledImage:
    """Resolve an index.json entry (image or nested index) to one platform and store it.

    `strict`: a single-platform image that does not match an explicit platform is an
    error (a pull); load_archive passes False and loads it as it is.
    """
    top = desc
    data = verified_read(src, _blob_rel(desc.digest), desc.digest)
    obj = parse_manifest(data, f"manifest {desc.digest}", f"{label}: ")
    mt = obj.get("mediaType") or desc.media_type
    repo_digest = desc.digest
    explicit = platform is not None and strict
    wanted = platform or host_platform()
    if mt in INDEX_TYPES or "manifests" in obj:
        store_digest_of(sink, data)
        entries = [Descriptor.from_json(d) for d in obj.get("manifests") or []]
        if not any(e.platform for e in entries if not is_attestation(e)) and len(entries) == 1:
            desc = entries[0]
        else:
            desc = choose_manifest(obj, wanted, label)
        data = verified_read(src, _blob_rel(desc.digest), desc.digest)
        obj = parse_manifest(data, f"manifest {desc.digest}", f"{label}: ")
        mt = obj.get("mediaType") or desc.media_type
        if mt in INDEX_TYPES or "manifests" in obj:
            raise OcirunError(f"{label}: nested index is not supported")
    store_digest_of(sink, data)
    cfg = read_config(obj, label, lambda d: verified_read(src, _blob_rel(d.digest), d.digest))
    if explicit and top.digest == desc.digest:
        check_platform(wanted, cfg.platform, label)
    store_digest_of(sink, cfg.data)
    for layer in cfg.layers:
        ingest(src, _blob_rel(layer.digest), layer.digest, sink, layer.size)
    name, tag = _name_tag(_entry_name(top))
    return PulledImage(
        name=name, tag=tag, repo_digest=repo_digest, manifest_digest=desc.digest, manifest=data,
        manifest_media_type=mt or "application/vnd.oci.image.manifest.v1+json", config_digest=cfg.desc.digest,
        config=cfg.data, config_json=cfg.json, layers=cfg.layers, platform=cfg.platform, source=source,
    )


# ---------------------------------------------------------------- entry points


def _kind(src: Source, path: Path) -> str:
    if src.exists("manifest.json"):
        return "docker-archive"
    if src.exists("index.json"):
        return "oci" if path.is_dir() else "oci-archive"
    raise OcirunError(f"{path} is neither a docker save archive nor an OCI image layout")


def load_archive(path: str | Path, sink: BlobSink, platform: Platform | None = None) -> list[PulledImage]:
    """Store every image an archive names (`ocirun load -i FILE`).

    docker save: one PulledImage per RepoTag (or one unnamed per image without tags);
    OCI layout: one per index.json entry, resolved to `platform` (default: the host's)
    when the entry is multi-platform. Archive kind is detected from the content.
    """
    path = Path(path)
    src = open_source(path)
    try:
        kind = _kind(src, path)
        out: list[PulledImage] = []
        if kind == "docker-archive":
            for entry in _docker_entries(src):
                img, tags = _load_docker_entry(src, entry, sink, kind)
                out += [_named(img, t) for t in tags] if tags else [img]
        else:
            for d in _oci_index(src).get("manifests") or []:
                desc = Descriptor.from_json(d)
                label = f"{path}:{_entry_name(desc) or desc.digest}"
                out.append(_load_oci_entry(src, desc, platform, sink, kind, label, strict=False))
        if not out:
            raise OcirunError(f"{path} holds no image")
        return out
    finally:
        src.close()


def pull_archive(ref: ArchiveReference, platform: Platform | None, sink: BlobSink) -> PulledImage:
    """One image from `docker-archive:PATH[:repo:tag|:@N]`, `oci[-archive]:PATH[:name]`."""
    path = Path(ref.path)
    src = open_source(path)
    try:
        if ref.transport == "docker-archive":
            return _pull_docker(src, ref, platform, sink)
        if ref.transport == "oci" and not path.is_dir():
            raise OcirunError(f"oci:{path}: not a directory (use oci-archive: for a tar)")
        return _pull_oci(src, ref, platform, sink)
    finally:
        src.close()


def _pull_docker(src: Source, ref: ArchiveReference, platform: Platform | None, sink: BlobSink) -> PulledImage:
    entries = _docker_entries(src)
    chosen: tuple[_DockerEntry, str | None] | None = None
    if ref.ref is None:
        if len(entries) != 1:
            tags = [t for e in entries for t in e.repo_tags]
            raise OcirunError(f"{ref} holds {len(entries)} images; name one: {', '.join(tags) or '@0, @1, ...'}")
        chosen = (entries[0], entries[0].repo_tags[0] if entries[0].repo_tags else None)
    elif ref.ref.startswith("@") and ref.ref[1:].isdigit():
        i = int(ref.ref[1:])
        if i >= len(entries):
            raise OcirunError(f"{ref}: no image @{i} (the archive holds {len(entries)})")
        chosen = (entries[i], entries[i].repo_tags[0] if entries[i].repo_tags else None)
    else:
        want = _name_tag(ref.ref)
        for e in entries:
            for t in e.repo_tags:
                if _name_tag(t) == want or t == ref.ref:
                    chosen = (e, t)
        if chosen is None:
            raise OcirunError(f"manifest for {ref} not found: the archive holds {', '.join(t for e in entries for t in e.repo_tags) or 'no tags'}")
    img, _ = _load_docker_entry(src, chosen[0], sink, "docker-archive")
    if platform is not None and platform.rank(img.platform) is None:
        raise OcirunError(f"no image for platform {platform} in {ref}; available: {img.platform}")
    return _named(img, chosen[1])


def _pull_oci(src: Source, ref: ArchiveReference, platform: Platform | None, sink: BlobSink) -> PulledImage:
    descs = [Descriptor.from_json(d) for d in _oci_index(src).get("manifests") or []]
    if ref.ref is None:
        if len(descs) != 1:
            names = [n for n in (_entry_name(d) for d in descs) if n]
            raise OcirunError(f"{ref} holds {len(descs)} images; name one: {', '.join(names) or 'none is named'}")
        chosen = descs[0]
    else:
        matches = [d for d in descs if ref.ref in (d.annotations.get(REF_NAME), d.annotations.get(CONTAINERD_NAME))]
        if not matches:
            names = [n for n in (_entry_name(d) for d in descs) if n]
            raise OcirunError(f"manifest for {ref} not found: the layout names {', '.join(names) or 'nothing'}")
        chosen = matches[-1]
    return _load_oci_entry(src, chosen, platform, sink, ref.transport, str(ref))

