"""Build real layer tars (tarfile), compress them for real, and make OCI layouts of them.

Entries are tuples, as data:
  ("dir", name, mode)            ("file", name, data, mode)
  ("symlink", name, target)      ("hardlink", name, target)
  ("chr"|"blk"|"fifo", name)     ("raw", TarInfo, data-or-None)
Optional trailing dict on any tuple: uid, gid, mtime.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

import zstandard

from layers.blobs import BlobStore
from layers.unpack import LayerSpec

MTIME = 1_600_000_000


def _info(name: str, kind: bytes, opts: dict) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.mtime = opts.get("mtime", MTIME)
    ti.uid = opts.get("uid", 0)
    ti.gid = opts.get("gid", 0)
    return ti


def make_tar(entries: list[tuple], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    """An uncompressed tar of `entries`."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for e in entries:
            opts = e[-1] if isinstance(e[-1], dict) else {}
            kind = e[0]
            if kind == "raw":
                tf.addfile(e[1], io.BytesIO(e[2]) if e[2] is not None else None)
                continue
            name = e[1]
            if kind == "dir":
                ti = _info(name, tarfile.DIRTYPE, opts)
                ti.mode = e[2] if len(e) > 2 and not isinstance(e[2], dict) else 0o755
                tf.addfile(ti)
            elif kind == "file":
                data = e[2] if isinstance(e[2], bytes) else e[2].encode()
                ti = _info(name, tarfile.REGTYPE, opts)
                ti.mode = e[3] if len(e) > 3 and not isinstance(e[3], dict) else 0o644
                ti.size = len(data)
                tf.addfile(ti, io.BytesIO(data))
            elif kind == "symlink":
                ti = _info(name, tarfile.SYMTYPE, opts)
                ti.linkname = e[2]
                ti.mode = 0o777
                tf.addfile(ti)
            elif kind == "hardlink":
                ti = _info(name, tarfile.LNKTYPE, opts)
                ti.linkname = e[2]
                ti.mode = 0o644
                tf.addfile(ti)
            elif kind in ("chr", "blk", "fifo"):
                ti = _info(name, {"chr": tarfile.CHRTYPE, "blk": tarfile.BLKTYPE, "fifo": tarfile.FIFOTYPE}[kind], opts)
                ti.mode = 0o666
                ti.devmajor, ti.devminor = (1, 3) if kind != "fifo" else (0, 0)
                tf.addfile(ti)
            else:
                raise ValueError(kind)
    return buf.getvalue()


def compress(data: bytes, how: str) -> bytes:
    if how == "gzip":
        return gzip.compress(data, compresslevel=6)
    if how == "zstd":
        return zstandard.ZstdCompressor().compress(data)
    return data


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def add_layers(store: BlobStore, layers: list[list[tuple]], how: str = "gzip") -> list[LayerSpec]:
    """Store each layer (compressed `how`) and return specs with real diff_ids."""
    specs = []
    for entries in layers:
        raw = make_tar(entries)
        blob = compress(raw, how)
        d = sha256(blob)
        store.ingest_bytes(d, blob)
        specs.append(LayerSpec(d, sha256(raw)))
    return specs


def write_oci_layout(
    dest: Path, layers: list[bytes], arch: str = "amd64", tag: str = "latest", config_extra: dict | None = None
) -> dict:
    """An OCI image layout with one image of the given (already compressed) layer blobs."""
    blobs = dest / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)

    def put(data: bytes) -> str:
        d = sha256(data)
        (blobs / d.split(":")[1]).write_bytes(data)
        return d

    descs, diff_ids = [], []
    for blob in layers:
        raw = blob
        if blob[:2] == b"\x1f\x8b":
            raw, mt = gzip.decompress(blob), "application/vnd.oci.image.layer.v1.tar+gzip"
        elif blob[:4] == b"\x28\xb5\x2f\xfd":
            raw = zstandard.ZstdDecompressor().decompressobj().decompress(blob)
            mt = "application/vnd.oci.image.layer.v1.tar+zstd"
        else:
            mt = "application/vnd.oci.image.layer.v1.tar"
        diff_ids.append(sha256(raw))
        descs.append({"mediaType": mt, "digest": put(blob), "size": len(blob)})
    config = {
        "architecture": arch,
        "os": "linux",
        "created": "2024-01-02T03:04:05Z",
        "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/usr/bin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        **(config_extra or {}),
    }
    cbytes = json.dumps(config).encode()
    cdesc = {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": put(cbytes), "size": len(cbytes)}
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "config": cdesc, "layers": descs}
    mbytes = json.dumps(manifest).encode()
    mdesc = {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": put(mbytes),
        "size": len(mbytes),
        "annotations": {"org.opencontainers.image.ref.name": tag},
        "platform": {"architecture": arch, "os": "linux"},
    }
    (dest / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (dest / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [mdesc]}))
    return {"config": config, "config_digest": cdesc["digest"], "manifest_digest": mdesc["digest"]}


def make_pulled(
    store: BlobStore,
    layers: list[list[tuple]],
    name: str | None = "docker.io/library/test",
    tag: str | None = "latest",
    arch: str = "amd64",
    how: str = "gzip",
    created: str = "2024-01-02T03:04:05Z",
):
    """A registry.types.PulledImage whose blobs are in `store`, as pull_image would return."""
    from registry.platform import Platform
    from registry.types import Descriptor, PulledImage

    specs = add_layers(store, layers, how)
    mt = {"gzip": "application/vnd.oci.image.layer.v1.tar+gzip", "zstd": "application/vnd.oci.image.layer.v1.tar+zstd"}
    descs = [Descriptor(mt.get(how, "application/vnd.oci.image.layer.v1.tar"), s.digest, store.size(s.digest)) for s in specs]
    config = {
        "architecture": arch,
        "os": "linux",
        "created": created,
        "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/usr/bin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [s.diff_id for s in specs]},
    }
    cbytes = json.dumps(config).encode()
    store.ingest_bytes(sha256(cbytes), cbytes)
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(cbytes), "size": len(cbytes)},
        "layers": [d.to_json() for d in descs],
    }
    mbytes = json.dumps(manifest).encode()
    store.ingest_bytes(sha256(mbytes), mbytes)
    return PulledImage(
        name=name,
        tag=tag,
        repo_digest=sha256(mbytes),
        manifest_digest=sha256(mbytes),
        manifest=mbytes,
        manifest_media_type=manifest["mediaType"],
        config_digest=sha256(cbytes),
        config=cbytes,
        config_json=config,
        layers=descs,
        platform=Platform.of("linux", arch),
    )


def many_files(n: int, prefix: str = "f", size: int = 100) -> list[tuple]:
    """A layer of n small files in a few directories (for concurrency/kill tests)."""
    entries: list[tuple] = []
    for d in range(max(1, n // 100)):
        entries.append(("dir", f"{prefix}{d}"))
        for i in range(100):
            entries.append(("file", f"{prefix}{d}/file{i}", bytes([65 + (i % 26)]) * size))
    return entries
