#!/usr/bin/env python3
"""Unpack speed: ocirun's layer unpacker vs `umoci unpack --rootless` (and skopeo copy + umoci).

The same Debian image is used for every tool: the cached bookworm minbase tarball
(scripts/fixtures) gzip-compressed into a one-layer OCI image layout. Runs are
interleaved, every tool unpacks into a fresh directory, and the medians are printed
with files/s and MB/s (uncompressed layer bytes per second).

    /opt/ocirun-venv/bin/python benchmarks/unpack_bench.py [--runs 5] [--tar PATH] [--json]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from layers.blobs import BlobStore  # noqa: E402
from layers.unpack import LayerSpec, unpack_layers  # noqa: E402
from ocirun.util.fs import rmtree  # noqa: E402

FIXTURES = Path(os.environ.get("OCIRUN_TEST_FIXTURES", "/var/tmp/ocirun-fixtures"))
DEFAULT_TAR = FIXTURES / "debian-bookworm-amd64.tar"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def build_layout(tar: Path, dest: Path) -> dict:
    """A one-layer OCI layout (gzip level 6, as docker) of `tar`; returns facts about it."""
    blobs = dest / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    gz = dest / "layer.gz"
    private = dest / "layer.tar"  # a private copy: the shared fixture may be rebuilt meanwhile
    shutil.copyfile(tar, private)
    tar = private
    with open(tar, "rb") as src, gzip.open(gz, "wb", compresslevel=6) as out:
        shutil.copyfileobj(src, out, 1 << 20)
    layer_digest, diff_id = sha256_file(gz), sha256_file(tar)
    os.replace(gz, blobs / layer_digest[7:])

    def put(obj: dict) -> dict:
        data = json.dumps(obj).encode()
        d = "sha256:" + hashlib.sha256(data).hexdigest()
        (blobs / d[7:]).write_bytes(data)
        return {"digest": d, "size": len(data)}

    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["/bin/bash"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }
    cdesc = {"mediaType": "application/vnd.oci.image.config.v1+json", **put(config)}
    ldesc = {
        "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
        "digest": layer_digest,
        "size": (blobs / layer_digest[7:]).stat().st_size,
    }
    mdesc = {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        **put({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
               "config": cdesc, "layers": [ldesc]}),
        "annotations": {"org.opencontainers.image.ref.name": "latest"},
    }
    (dest / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [mdesc]}))
    (dest / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    with tarfile.open(tar) as tf:
        entries = sum(1 for _ in tf)
    size = tar.stat().st_size
    tar.unlink()
    return {
        "layer": layer_digest,
        "diff_id": diff_id,
        "compressed": ldesc["size"],
        "uncompressed": size,
        "entries": entries,
    }


def run_ocirun(layout: Path, facts: dict, dest: Path) -> float:
    t0 = time.perf_counter()
    unpack_layers(BlobStore(layout), [LayerSpec(facts["layer"], facts["diff_id"])], dest, dest.parent / "own.json",
                  notice=lambda _m: None)
    return time.perf_counter() - t0


def run_umoci(layout: Path, dest: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run(["umoci", "unpack", "--rootless", "--image", f"{layout}:latest", str(dest)],
                   check=True, capture_output=True)
    return time.perf_counter() - t0


def run_skopeo_umoci(layout: Path, dest: Path) -> float:
    """skopeo copy into a fresh layout (what a pull would write), then umoci unpack."""
    copy = dest.parent / "skopeo-copy"
    t0 = time.perf_counter()
    subprocess.run(["skopeo", "--insecure-policy", "copy", "--quiet", f"oci:{layout}:latest", f"oci:{copy}:latest"],
                   check=True, capture_output=True)
    subprocess.run(["umoci", "unpack", "--rootless", "--image", f"{copy}:latest", str(dest)],
                   check=True, capture_output=True)
    took = time.perf_counter() - t0
    shutil.rmtree(copy)
    return took


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tar", type=Path, default=DEFAULT_TAR, help="uncompressed rootfs tarball")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--work", type=Path, default=None, help="scratch directory (default: a temp dir)")
    ap.add_argument("--no-skopeo", action="store_true", help="skip the skopeo copy + umoci variant")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    args = ap.parse_args()
    if not args.tar.is_file():
        print(f"unpack_bench: {args.tar} is missing (run sudo scripts/fixtures)", file=sys.stderr)
        return 2
    missing = [t for t in ("umoci", "skopeo") if not shutil.which(t)]
    if missing:
        print(f"unpack_bench: {' and '.join(missing)} not installed", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="unpack-bench-", dir=args.work))
    try:
        facts = build_layout(args.tar, work / "layout")
        tools = {
            "ocirun": lambda d: run_ocirun(work / "layout", facts, d),
            "umoci": lambda d: run_umoci(work / "layout", d),
        }
        if not args.no_skopeo:
            tools["skopeo+umoci"] = lambda d: run_skopeo_umoci(work / "layout", d)
        times: dict[str, list[float]] = {name: [] for name in tools}
        for i in range(args.runs):
            for name, fn in tools.items():  # interleaved, so drift hits every tool alike
                dest = work / "runs" / f"{name}-{i}" / "rootfs"
                dest.parent.mkdir(parents=True)
                times[name].append(fn(dest))
                rmtree(dest.parent)
        results = {}
        for name, ts in times.items():
            med = statistics.median(ts)
            results[name] = {
                "median_s": round(med, 3),
                "runs": [round(t, 3) for t in ts],
                "files_per_s": round(facts["entries"] / med),
                "mb_per_s": round(facts["uncompressed"] / med / 1e6, 1),
            }
        if args.json:
            print(json.dumps({"image": facts, "results": results}, indent=2))
            return 0
        print(f"image: {args.tar.name}: {facts['entries']} entries, "
              f"{facts['compressed'] / 1e6:.1f} MB gzip, {facts['uncompressed'] / 1e6:.1f} MB tar; "
              f"{args.runs} runs, uid {os.geteuid()}")
        print(f"{'tool':<14}{'median':>9}{'files/s':>10}{'MB/s':>8}   runs")
        for name, r in results.items():
            print(f"{name:<14}{r['median_s']:>8.3f}s{r['files_per_s']:>10}{r['mb_per_s']:>8}   "
                  + " ".join(f"{t:.2f}" for t in r["runs"]))
        base = results["umoci"]["median_s"]
        print(f"ocirun / umoci: {results['ocirun']['median_s'] / base:.2f}x the time")
        return 0
    finally:
        rmtree(work)


if __name__ == "__main__":
    sys.exit(main())
