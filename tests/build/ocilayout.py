"""Write a stored image as an OCI layout, for tools nobody here wrote (skopeo, umoci)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from layers.store import Store


def write_layout(store: Store, ref: str, dest: Path, tag: str = "latest") -> Path:
    rec = store.resolve(ref)
    assert rec is not None, ref
    man = store.blobs.read_bytes(rec.manifest_digest)
    doc = json.loads(man)
    (dest / "blobs/sha256").mkdir(parents=True)
    for digest in [rec.manifest_digest, doc["config"]["digest"], *(d["digest"] for d in doc["layers"])]:
        shutil.copyfile(store.blobs.path(digest), dest / "blobs/sha256" / digest.split(":")[1])
    (dest / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    index = {"schemaVersion": 2, "manifests": [{
        "mediaType": doc["mediaType"], "digest": rec.manifest_digest, "size": len(man),
        "annotations": {"org.opencontainers.image.ref.name": tag}}]}
    (dest / "index.json").write_text(json.dumps(index))
    return dest
