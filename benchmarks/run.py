#!/usr/bin/env python3
"""Run the same workloads natively, under PRoot 5.4 (as it is and pinned to one CPU) and
under ``ocirun proot``, interleaved, and print a markdown table of medians and ratios.

    python benchmarks/run.py                     # 5 runs of everything
    python benchmarks/run.py --runs 3 --only stat --only start
    python benchmarks/run.py --write-readme      # also put the table into benchmarks/README.md
    python benchmarks/run.py --list              # workloads and runners

PRoot and ocirun run the rows in a real root filesystem (the tests' Debian tree,
``--rootfs``), where every path is rewritten; native runs the same programs on the host.
After the timed runs, each PRoot-like runner runs each row once more with its tracer
under ``strace -c`` (the tracer only, not the guest): its wait4 calls are its stops, so
the table shows stops, tracer syscalls per stop and µs per stop ((runner - native) /
stops), which lets a table from one machine be read on another.

Each run goes through every workload and, inside it, every runner in a rotated order,
so slow drifts of the machine (other load, caches, frequency) fall on all runners
alike. A cell whose command fails (non-zero exit, time-out, runner missing) shows
"fail" or "n/a": one missing runner must not hide the others.

Adding a workload is one ``Workload(...)`` entry in WORKLOADS; adding a runner is one
``Runner(...)`` entry in RUNNERS. The tables are formatted by report.py beside this
file. Not run in CI: timings need a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from report import (  # benchmarks/report.py
    README,
    REPO,
    Stops,
    machine,
    stops_table,
    strace_counts,
    table,
    write_readme,
)

HOST_PYTHON = "/usr/bin/python3"  # the arm64 and container rows' python
PERL = "/usr/bin/perl"  # in the Debian tree and on the host (Debian's perl-base); the tree has no python3
STAT_LOOP = 'stat("/usr/lib/os-release") for 1..100000'  # one newfstatat each
FIXTURES = Path(os.environ.get("OCIRUN_TEST_FIXTURES") or "/var/tmp/ocirun-fixtures")


# ---------------------------------------------------------------- context


@dataclass
class Context:
    """What workloads and runners need: a scratch dir, the tools, and lazily made inputs."""

    tmp: Path
    ram: Path  # a scratch dir in memory (tmpfs: /dev/shm, bound with /dev), else tmp
    proot51: str
    proot54: str
    ocirun_python: str
    timeout: float
    rootfs: str
    made: dict[str, Path] = field(default_factory=dict)

    def fmt(self, argv: list[str]) -> list[str]:
        """Fill {tmp}, {ram}, {python} and the inputs that setups made into an argv."""
        values = {"tmp": str(self.tmp), "ram": str(self.ram), "python": HOST_PYTHON, "perl": PERL, **{k: str(v) for k, v in self.made.items()}}
        return [a.format(**values) for a in argv]


# ---------------------------------------------------------------- workloads


def make_tarball(ctx: Context) -> None:
    """A tarball of 3,000 small files in 60 directories (plus the directories), in memory
    as the files it unpacks: the row measures the engines, not the disk's write-back."""
    src = ctx.ram / "tar-src"
    rng = random.Random(42)
    for d in range(60):
        sub = src / f"dir{d:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        for f in range(50):
            (sub / f"file{f:03d}.txt").write_bytes(rng.randbytes(rng.randint(64, 8192)))
    tarball = ctx.ram / "files.tar"
    with tarfile.open(tarball, "w") as tar:
        tar.add(src, arcname="files")
    shutil.rmtree(src)
    ctx.made["tarball"] = tarball


def ram_base(tmp: str) -> str:
    """/dev/shm when it is a tmpfs we may write to (the guests see it: /dev is bound), else tmp."""
    try:
        with open("/proc/self/mounts") as f:
            shm = any(line.split()[1:3] == ["/dev/shm", "tmpfs"] for line in f)
    except OSError:
        shm = False
    return "/dev/shm" if shm and os.access("/dev/shm", os.W_OK | os.X_OK) else tmp


@dataclass
class Workload:
    """One benchmark row.

    command: the program as every runner runs it ({tmp}, {python}, and names that
        ``setup`` put in ctx.made are filled in).
    setup: makes inputs once, before the first run.
    proot_args: extra options for the PRoot-like runners only (e.g. ["-0"]).
    runners: restrict the row to these runner names (None: all).
    commands: full argv per runner name, replacing the wrapping (e.g. a udocker row).
    """

    name: str
    command: list[str]
    setup: Callable[[Context], None] | None = None
    proot_args: list[str] = field(default_factory=list)
    runners: tuple[str, ...] | None = None
    commands: dict[str, list[str]] | None = None


SHELL_TRUE_LOOP = "i=0; while [ $i -lt {n} ]; do /bin/true; i=$((i+1)); done"

# arm64 under QEMU: the cached arm64 Debian tree of the tests, run with -q.
ARM64_LOOP = "for i in $(seq 200); do /bin/true; done; find /usr > /dev/null"
ARM64_ARGS = ["-q", "qemu-aarch64-static", "-r", "{arm64}", "-b", "/proc", "-b", "/dev", "/bin/bash", "-c", ARM64_LOOP]


def arm64_tree(ctx: Context) -> None:
    """The tests' debian-bookworm-arm64 fixture, and the tool paths its full commands need."""
    ctx.made.update(arm64=FIXTURES / "debian-bookworm-arm64", proot51=ctx.proot51, proot54=ctx.proot54,
                    ocirun_python=ctx.ocirun_python)

def container_images(ctx: Context) -> None:
    """debian:12 (the tests' cached tree) in an ocirun store and in a udocker dir.

    udocker cannot download its udockertools here: a VERSION file stands in for
    them and UDOCKER_USE_PROOT_EXECUTABLE points it at PRoot 5.4 (5.1 breaks -k).
    """
    fixtures = FIXTURES
    layout = next(iter(sorted((fixtures / "layouts").glob("debian-*"))), None)
    udocker = shutil.which("udocker") or str(Path(sys.executable).with_name("udocker"))
    store, udir, archive = ctx.tmp / "ocirun-store", ctx.tmp / "udocker", ctx.tmp / "debian.tar"
    subprocess.run(["skopeo", "copy", "--override-arch", "amd64", f"oci:{layout}:12",
                    f"docker-archive:{archive}:bench/debian:12"], check=True, capture_output=True)
    subprocess.run([ctx.ocirun_python, "-m", "ocirun", "--root", str(store), "load", "-i", str(archive)],
                   check=True, capture_output=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    (udir / "lib").mkdir(parents=True)
    (udir / "lib" / "VERSION").write_text("1.2.11\n")
    root_flag = " --allow-root" if os.geteuid() == 0 else ""
    ctx.made.update(ocirun_store=store, ocirun_python=ctx.ocirun_python,
                    udocker_cmd=f"UDOCKER_DIR={udir} UDOCKER_USE_PROOT_EXECUTABLE={ctx.proot54} {udocker}{root_flag}")
    subprocess.run(["sh", "-c", ctx.made["udocker_cmd"] + f" import {fixtures / 'debian-bookworm-amd64.tar'} bench/debian:12"],
                   check=True, capture_output=True)


WORKLOADS: list[Workload] = [
    Workload("start-up (/bin/true)", ["/bin/true"]),
    Workload("stat x 100k (perl stat loop)", ["{perl}", "-e", STAT_LOOP]),
    Workload("stat x 100k with -0 (fake root)", ["{perl}", "-e", STAT_LOOP], proot_args=["-0"]),
    Workload("find /usr, 3 times", ["sh", "-c", "; ".join(["find /usr > /dev/null"] * 3)]),
    Workload("fork+exec (1,000 /bin/true)", ["sh", "-c", SHELL_TRUE_LOOP.replace("{n}", "1000")]),
    Workload(
        "tar x (3,000 files)",
        ["sh", "-c", "rm -rf {ram}/untar && mkdir {ram}/untar && tar -xf {tarball} -C {ram}/untar"],
        setup=make_tarball,
    ),
    Workload(
        "arm64 (QEMU): 200 /bin/true + find /usr",
        [],
        setup=arm64_tree,
        runners=("proot 5.1", "proot 5.4", "proot 5.4 pinned", "ocirun"),
        commands={
            "proot 5.1": ["{proot51}", *ARM64_ARGS],
            "proot 5.4": ["{proot54}", *ARM64_ARGS],
            "proot 5.4 pinned": ["taskset", "-c", "1", "{proot54}", *ARM64_ARGS],
            "ocirun": ["{ocirun_python}", "-m", "ocirun", "proot", *ARM64_ARGS],
        },
    ),
    Workload(
        "container: --rm debian:12 true, image cached (proot 5.4 column: udocker + PRoot 5.4)",
        [],
        setup=container_images,
        runners=("proot 5.4", "ocirun"),
        commands={
            "proot 5.4": ["sh", "-c", "{udocker_cmd} run --rm bench/debian:12 true"],
            "ocirun": ["{ocirun_python}", "-m", "ocirun", "--root", "{ocirun_store}", "run", "--rm",
                       "bench/debian:12", "true"],
        },
    ),
    Workload(
        # Long enough (a few seconds) that the steady-state cost shows, not the
        # start-up, which has its own row.
        "CPU-bound loop (perl, 30M iterations)",
        ["{perl}", "-e", "my $x = 0; $x += $_ * $_ for 1..30_000_000"],
    ),
]


# ---------------------------------------------------------------- runners


@dataclass
class Runner:
    """One column: how to run a workload's command, and whether the tool is here."""

    name: str
    wrap: Callable[[Context, Workload, list[str]], list[str]]
    available: Callable[[Context], str | None]  # None when usable, else why not
    anchor: bool = False  # a PRoot to compare ocirun with (the best anchor counts)
    subject: bool = False  # the runner the ratios are about
    default: bool = True  # run without --runner naming it


def _exe(path: str) -> Callable[[Context], str | None]:
    def check(ctx: Context) -> str | None:
        p = getattr(ctx, path)
        return None if p and os.access(p, os.X_OK) else f"{p or path} not found"

    return check


def _ocirun_available(ctx: Context) -> str | None:
    return None if os.access(ctx.ocirun_python, os.X_OK) else f"{ctx.ocirun_python} not found"


def _in_rootfs(ctx: Context, wl: Workload) -> list[str]:
    """The options that put a PRoot-like runner's guest into the tree, with /dev and /proc
    bound at the same paths, and the scratch dir too unless the tar row's input and output
    are in /dev/shm: a binding the tree has no entry for (the scratch dir in /tmp) makes
    ocirun list it in its parent, trapping every getdents64 (PRoot does not list it)."""
    own = [] if str(ctx.ram).startswith("/dev/") else ["-b", str(ctx.tmp), "-w", str(ctx.tmp)]
    return [*wl.proot_args, "-r", ctx.rootfs, "-b", "/dev", "-b", "/proc", *(own or ["-w", "/"])]


PIN = ["taskset", "-c", "1"]  # the placement ocirun chooses for itself: tracer and guest on one CPU

RUNNERS: list[Runner] = [
    Runner("native", lambda ctx, wl, cmd: cmd, lambda ctx: None),
    Runner(
        "proot 5.1",
        lambda ctx, wl, cmd: [ctx.proot51, *_in_rootfs(ctx, wl), *cmd],
        _exe("proot51"),
        anchor=True,
        default=False,
    ),
    Runner(
        "proot 5.4",
        lambda ctx, wl, cmd: [ctx.proot54, *_in_rootfs(ctx, wl), *cmd],
        _exe("proot54"),
        anchor=True,
    ),
    Runner(
        "proot 5.4 pinned",
        lambda ctx, wl, cmd: [*PIN, ctx.proot54, *_in_rootfs(ctx, wl), *cmd],
        _exe("proot54"),
        anchor=True,
    ),
    Runner(
        "ocirun",
        lambda ctx, wl, cmd: [ctx.ocirun_python, "-m", "ocirun", "proot", *_in_rootfs(ctx, wl), *cmd],
        _ocirun_available,
        subject=True,
    ),
    Runner(  # the pure-Python loop, for comparison (--runner "ocirun, no fast path")
        "ocirun, no fast path",
        lambda ctx, wl, cmd: ["env", "OCIRUN_NO_FASTPATH=1", ctx.ocirun_python, "-m", "ocirun", "proot",
                              *_in_rootfs(ctx, wl), *cmd],
        _ocirun_available,
        default=False,
    ),
]


# ---------------------------------------------------------------- measuring


@dataclass
class Cell:
    times: list[float] = field(default_factory=list)
    error: str | None = None  # first failure, if any

    @property
    def median(self) -> float | None:
        return statistics.median(self.times) if self.times and not self.error else None


def run_once(argv: list[str], ctx: Context) -> tuple[float | None, str | None]:
    """Wall time of one run, or the reason it failed."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            timeout=ctx.timeout, env=env, cwd=ctx.tmp,
        )
    except subprocess.TimeoutExpired:
        return None, f"timed out after {ctx.timeout:.0f}s"
    except OSError as e:
        return None, str(e)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        last = proc.stderr.decode(errors="replace").strip().splitlines()[-1:] or [""]
        return None, f"exit {proc.returncode}: {last[0][:200]}"
    return elapsed, None


def argv_for(ctx: Context, wl: Workload, runner: Runner) -> list[str] | None:
    if wl.commands and runner.name in wl.commands:
        return ctx.fmt(wl.commands[runner.name])
    if wl.runners is not None and runner.name not in wl.runners:
        return None
    return runner.wrap(ctx, wl, ctx.fmt(wl.command))


def compile_bytecode() -> None:
    """Compile ocirun's modules once, as an installed ocirun has them (pip does it): a
    checkout run with PYTHONDONTWRITEBYTECODE=1 would compile every module at every
    start, and the start-up row would measure the compiler."""
    import compileall

    for pkg in ("ocirun", "layers", "registry"):
        if (REPO / pkg).is_dir():
            compileall.compile_dir(str(REPO / pkg), quiet=1)


def measure(ctx: Context, workloads: list[Workload], runners: list[Runner], runs: int,
            warmup: int) -> dict[tuple[str, str], Cell]:
    cells: dict[tuple[str, str], Cell] = {}
    usable = {}
    for r in runners:
        why = r.available(ctx)
        usable[r.name] = why is None
        if why:
            print(f"runner {r.name}: n/a ({why})", file=sys.stderr)
    for wl in workloads:
        if wl.setup:
            wl.setup(ctx)
    for i in range(-warmup, runs):
        label = f"warm-up {i + warmup + 1}/{warmup}" if i < 0 else f"run {i + 1}/{runs}"
        for wl in workloads:
            order = runners[i % len(runners):] + runners[: i % len(runners)]  # rotate
            for r in order:
                if not usable[r.name]:
                    continue
                argv = argv_for(ctx, wl, r)
                if argv is None:
                    continue
                cell = cells.setdefault((wl.name, r.name), Cell())
                if cell.error:
                    continue  # failed once: do not spend the time again
                t, err = run_once(argv, ctx)
                if err:
                    cell.error = err
                    print(f"{label}: {wl.name} / {r.name}: FAIL {err}", file=sys.stderr)
                elif i >= 0:
                    cell.times.append(t)
            print(f"{label}: {wl.name} done", file=sys.stderr)
    return cells


# ---------------------------------------------------------------- stops


def count_stops(argv: list[str], ctx: Context) -> Stops | None:
    """Run argv once with its tracer (the runner's own process, not the guest, and not
    taskset: strace follows the exec) under ``strace -c``. Every ptrace stop the
    tracer handles is one wait4 (PRoot 5.4 and ocirun both wait with wait4)."""
    out = ctx.tmp / "strace-c.txt"
    t, err = run_once(["strace", "-c", "-o", str(out), *argv], ctx)
    if err or not out.exists():
        return None
    calls = strace_counts(out.read_text())
    stops = calls.get("wait4", 0) + calls.get("waitid", 0)
    return Stops(stops, sum(calls.values())) if stops else None


def count_all_stops(ctx: Context, workloads: list[Workload], runners: list[Runner]) -> dict[tuple[str, str], Stops]:
    found: dict[tuple[str, str], Stops] = {}
    if not shutil.which("strace"):
        print("strace not found: no stop counts", file=sys.stderr)
        return found
    for wl in workloads:
        for r in runners:
            argv = argv_for(ctx, wl, r) if r.name != "native" and r.available(ctx) is None else None
            if argv is None or wl.commands:
                continue
            n = count_stops(argv, ctx)
            if n is not None:
                found[(wl.name, r.name)] = n
        print(f"stops counted: {wl.name}", file=sys.stderr)
    return found


# ---------------------------------------------------------------- main


def default_proot54() -> str:
    """$OCIRUN_PROOT, else ../shared/tools/proot-5.4 beside the repository if it is there."""
    if os.environ.get("OCIRUN_PROOT"):
        return os.environ["OCIRUN_PROOT"]
    beside = REPO.parent / "shared" / "tools" / "proot-5.4"
    return str(beside) if beside.is_file() else ""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5, help="timed runs per cell (default 5)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed runs first (default 1)")
    ap.add_argument("--only", action="append", default=[], metavar="TEXT",
                    help="only workloads whose name contains TEXT (repeatable)")
    ap.add_argument("--runner", action="append", default=[], metavar="NAME",
                    help="only these runners (repeatable; default all)")
    ap.add_argument("--timeout", type=float, default=300, help="seconds per run (default 300)")
    ap.add_argument("--rootfs", default=str(FIXTURES / "debian-bookworm-amd64"),
                    help="the guest tree of the PRoot-like runners (default: the tests' Debian tree)")
    ap.add_argument("--no-stops", action="store_true", help="skip the stop-counting runs under strace")
    ap.add_argument("--proot51", default=shutil.which("proot") or "",
                    help="Debian's proot (runner 'proot 5.1', only with --runner)")
    ap.add_argument("--proot54", "--proot", default=default_proot54(), metavar="PATH",
                    help="upstream PRoot 5.4 (default: $OCIRUN_PROOT, else ../shared/tools/proot-5.4 "
                         "beside the repository)")
    ap.add_argument("--ocirun-python", default=str(Path(sys.executable)),
                    help="python that runs `-m ocirun` (default: this one)")
    ap.add_argument("--write-readme", action="store_true",
                    help=f"put the table into {README.relative_to(REPO)}")
    ap.add_argument("--json", metavar="FILE", help="also write every raw time to FILE")
    ap.add_argument("--list", action="store_true", help="list workloads and runners")
    args = ap.parse_args(argv)

    workloads = [w for w in WORKLOADS if not args.only or any(t in w.name for t in args.only)]
    runners = [r for r in RUNNERS if r.name in args.runner or (not args.runner and r.default)]
    if args.list:
        print("workloads:\n" + "\n".join(f"  {w.name}" for w in WORKLOADS))
        print("runners:\n" + "\n".join(f"  {r.name}" for r in RUNNERS))
        return 0
    if not workloads or not runners:
        ap.error("no workload or runner selected (see --list)")

    with tempfile.TemporaryDirectory(prefix="ocirun-bench-") as tmp, \
            tempfile.TemporaryDirectory(prefix="ocirun-bench-", dir=ram_base(tmp)) as ram:
        if not os.path.isdir(args.rootfs):
            ap.error(f"--rootfs {args.rootfs}: not a directory (build the test fixtures or pass a tree)")
        ctx = Context(Path(tmp), Path(ram), args.proot51, args.proot54, args.ocirun_python, args.timeout, args.rootfs)
        compile_bytecode()
        cells = measure(ctx, workloads, runners, args.runs, args.warmup)
        stops = {} if args.no_stops else count_all_stops(ctx, workloads, runners)

    text = (f"Medians of {args.runs} interleaved runs (wall time); "
            f"{machine()}.\n\n{table(cells, workloads, runners)}")
    if stops:
        text += ("\n\nStops (one extra run each, tracer under `strace -c`), tracer syscalls per stop, "
                 "µs per stop = (median - native median) / stops:\n\n" + stops_table(cells, stops, workloads, runners))
    failures = [f"- {w} / {r}: {c.error}" for (w, r), c in cells.items() if c.error]
    if failures:
        text += "\n\nFailed cells:\n" + "\n".join(failures)
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps(
            {f"{w} | {r}": {"times": c.times, "error": c.error} for (w, r), c in cells.items()},
            indent=2))
    if args.write_readme:
        write_readme(text)
        print(f"\nwritten to {README}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
