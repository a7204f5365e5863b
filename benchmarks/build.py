"""`ocirun build` against `ocirun run` doing the same command, side by side.

The issue's measure of the builder's own cost: `FROM base` + `RUN CMD` built with
--no-cache, and `ocirun run --rm base CMD`, interleaved for --runs rounds, wall and
CPU time (ocirun and everything it waited for) and the load average per run. The base
is the tests' Debian tree (the fixtures' OCI layout) with CMD's packages downloaded
by a first build (`--setup`, which needs Debian's archive), so the measured runs are
offline. `--ocirun-path DIR` adds a column for another checkout (e.g. an older one).

    python benchmarks/build.py --runs 3
    python benchmarks/build.py --runs 3 --ocirun-path /path/to/older/checkout
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
SETUP = "apt-get update -q && apt-get install -y -q --download-only hello"
COMMAND = "apt-get install -y -q hello"


def ocirun(src: Path, store: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(src)}
    return subprocess.run([sys.executable, "-m", "ocirun", "--root", str(store), *args], env=env,
                          capture_output=True, text=True, check=check)


def prepare(store: Path, work: Path, setup: str) -> None:
    """The base image `bench-base:1`: the fixtures' Debian layout plus `setup`."""
    fixtures = Path(os.environ.get("OCIRUN_TEST_FIXTURES", "/var/tmp/ocirun-fixtures"))
    layout = next((fixtures / "layouts").glob("debian-*"), None)
    if layout is None:
        sys.exit(f"no Debian OCI layout in {fixtures}/layouts (run scripts/test once)")
    out = ocirun(HERE, store, "load", "-i", str(layout)).stdout
    image_id = out.strip().split()[-1]
    ocirun(HERE, store, "tag", image_id, "bench-debian:12")
    (work / "setup").mkdir()
    (work / "setup/Dockerfile").write_text(f"FROM bench-debian:12\nRUN {setup}\n")
    ocirun(HERE, store, "build", "-q", "-t", "bench-base:1", str(work / "setup"))


def timed(src: Path, store: Path, args: list[str]) -> tuple[float, float, float]:
    """(wall s, CPU s, load average when it started)."""
    load = os.getloadavg()[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    cp = ocirun(src, store, *args, check=False)
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if cp.returncode != 0:
        sys.exit(f"ocirun {' '.join(args)} failed:\n{cp.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, load


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--setup", default=SETUP)
    ap.add_argument("--command", default=COMMAND)
    ap.add_argument("--ocirun-path", type=Path, help="another checkout to time the build of")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="ocirun-build-bench-", dir="/var/tmp") as tmp:
        work, store = Path(tmp), Path(tmp) / "store"
        prepare(store, work, args.setup)
        (work / "ctx").mkdir()
        (work / "ctx/Dockerfile").write_text(f"FROM bench-base:1\nRUN {args.command}\n")
        build = ["build", "-q", "--no-cache", str(work / "ctx")]
        cols = [("run", HERE, ["run", "--rm", "bench-base:1", "sh", "-c", args.command]), ("build", HERE, build)]
        if args.ocirun_path:
            cols.append((f"build ({args.ocirun_path})", args.ocirun_path.resolve(), build))
        times: dict[str, list[float]] = {name: [] for name, _, _ in cols}
        for i in range(args.runs):
            for name, src, argv in cols:
                wall, cpu, load = timed(src, store, argv)
                times[name].append(wall)
                print(f"round {i + 1} {name}: {wall:.2f} s wall, {cpu:.2f} s CPU (load {load:.1f})", flush=True)
        base = statistics.median(times["run"])
        for name, values in times.items():
            med = statistics.median(values)
            print(f"{name}: median {med:.2f} s ({min(values):.2f}-{max(values):.2f}), {med / base:.2f}x run")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
