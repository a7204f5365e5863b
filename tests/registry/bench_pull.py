"""Pull throughput from a loopback docker-registry, and where the time goes.

    /opt/ocirun-venv/bin/python -m tests.registry.bench_pull [SIZE_MB]

Pushes one image with a SIZE_MB random (incompressible, uncompressed-tar media type)
layer and the Debian bookworm fixture tree gzip'd as a second image, then times:
curl to /dev/null and to a file (the registry + loopback ceiling), sha256sum of
the blob (hash ceiling), and pull_image into a fresh DirectorySink (1 and 4 workers).
Not a test: prints a table.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from registry.pull import pull_image
from tests.registry.dirsink import DirectorySink
from tests.registry.regserver import ImageSpec, build_layout, push, start_registry

FIXTURE_TAR = Path(os.environ.get("OCIRUN_TEST_FIXTURES", "/var/tmp/ocirun-fixtures")) / "debian-bookworm-amd64.tar"


def _t(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _tc(fn) -> tuple[float, float]:
    """Wall time and this process's CPU time (all threads) of fn()."""
    t, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t, time.process_time() - c


def main() -> None:
    size_mb = int(sys.argv[1]) if len(sys.argv) > 1 else 256
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp_s:
        tmp = Path(tmp_s)
        payload = os.urandom(size_mb << 20)
        specs = [ImageSpec("linux/amd64", [{"big.bin": payload}], compression="none")]
        layout = build_layout(tmp / "layout", specs, tag="big")
        if FIXTURE_TAR.is_file():
            build_layout(tmp / "layout", [ImageSpec("linux/amd64", [FIXTURE_TAR.read_bytes()])], tag="debian")
        reg = start_registry(tmp / "reg")
        try:
            push(layout, reg, "bench/big:1", tag="big")
            img = pull_image(f"{reg.host}/bench/big:1", None, DirectorySink(tmp / "warm"), progress=False)
            layer = img.layers[0]
            url = f"{reg.url}/v2/bench/big/blobs/{layer.digest}"
            mb = layer.size / 1e6
            rows = []
            rows.append(("curl -> /dev/null", _t(lambda: subprocess.run(["curl", "-sf", "-o", "/dev/null", url], check=True))))
            rows.append(("curl -> file", _t(lambda: subprocess.run(["curl", "-sf", "-o", str(tmp / "c.bin"), url], check=True))))
            rows.append(("sha256sum file", _t(lambda: subprocess.run(["sha256sum", str(tmp / "c.bin")], check=True, capture_output=True))))
            cpu = {}
            for n, workers in enumerate((1, 4)):
                sink = DirectorySink(tmp / f"s{n}")
                name = f"pull_image ({workers} worker)"
                wall, cpu[name] = _tc(lambda s=sink, w=workers: pull_image(f"{reg.host}/bench/big:1", None, s, progress=False, max_workers=w))
                rows.append((name, wall))
            if Path("/dev/shm").is_dir():
                with tempfile.TemporaryDirectory(dir="/dev/shm") as shm:
                    name = "pull_image -> tmpfs sink"
                    wall, cpu[name] = _tc(lambda: pull_image(f"{reg.host}/bench/big:1", None, DirectorySink(shm), progress=False))
                    rows.append((name, wall))
            print(f"blob: {mb:.0f} MB random, uncompressed; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
            for name, secs in rows:
                extra = f"  (ocirun CPU {cpu[name]:.2f} s)" if name in cpu else ""
                print(f"  {name:<26} {secs:6.2f} s  {mb / secs:7.0f} MB/s{extra}")
            if FIXTURE_TAR.is_file():
                push(layout, reg, "bench/debian:1", tag="debian")
                sink = DirectorySink(tmp / "deb")
                secs = _t(lambda: pull_image(f"{reg.host}/bench/debian:1", None, sink, progress=False))
                dimg = pull_image(f"{reg.host}/bench/debian:1", None, sink, progress=False)
                dmb = sum(x.size for x in dimg.layers) / 1e6
                print(f"debian bookworm gzip layer {dmb:.0f} MB: pull_image {secs:.2f} s = {dmb / secs:.0f} MB/s")
                again = _t(lambda: pull_image(f"{reg.host}/bench/debian:1", None, sink, progress=False))
                print(f"second pull of a cached image: {again * 1000:.0f} ms")
        finally:
            reg.stop()


if __name__ == "__main__":
    main()
