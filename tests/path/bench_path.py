"""Micro-benchmark of PathTranslator.to_host: µs per call, cold and warm, cache on and off.

    /opt/ocirun-venv/bin/python -m tests.path.bench_path [--rootfs DIR] [-n N]

Without --rootfs it builds a small merged-/usr tree in a temp dir. Prints a
table; asserts nothing (tests/path/test_bench.py only checks that it runs).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from ocirun.engine.path import PathTranslator

TYPICAL = [
    "/usr/lib/x86_64-linux-gnu/libc.so.6",  # deep, no symlink
    "/lib/x86_64-linux-gnu/libc.so.6",  # through the merged-/usr symlink
    "/etc/passwd",
    "/bin/sh",  # absolute symlink
    "/usr/share/doc/newfile",  # missing leaf (creat target)
    "/usr/lib/../lib/x86_64-linux-gnu/./libm.so.6",  # '..' and '.'
]


def build_tree(root: Path) -> Path:
    """Merged-/usr layout with the files TYPICAL names, plus a wide directory."""
    for d in ("etc", "usr/lib/x86_64-linux-gnu", "usr/bin", "usr/share/doc", "tmp"):
        (root / d).mkdir(parents=True, exist_ok=True)
    for f in ("etc/passwd", "usr/lib/x86_64-linux-gnu/libc.so.6", "usr/lib/x86_64-linux-gnu/libm.so.6"):
        (root / f).write_text("x")
    (root / "usr/bin/dash").write_text("x")
    os.symlink("dash", root / "usr/bin/sh")
    os.symlink("usr/lib", root / "lib")
    os.symlink("/usr/bin", root / "bin")
    wide = root / "usr/share/doc"
    for i in range(800):
        (wide / f"pkg{i}").write_text("x")
    return root


def per_call(fn: Callable[[], object], n: int) -> float:
    """Best of 3 runs of n calls, µs per call."""
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, time.perf_counter() - t0)
    return best / n * 1e6


def _warm(tr: PathTranslator, path: str, n: int, cwd: str = "/") -> float:
    tr.to_host(path, cwd=cwd)
    return per_call(lambda: tr.to_host(path, cwd=cwd), n)


def _cold(tr: PathTranslator, path: str, n: int) -> float:
    def cold() -> str:
        tr.invalidate_all()
        return tr.to_host(path)

    return per_call(cold, n)


def _new_leaves(tr: PathTranslator, names: list[str], n: int) -> float:
    """find-like: each file of a wide, cached directory looked up once."""

    def sweep() -> None:
        tr.invalidate_all()
        tr.to_host(names[0])
        for name in names:
            tr.to_host(name)

    return per_call(sweep, n) / len(names)


def _invalidate_then_lookup(tr: PathTranslator, host: str, path: str, n: int) -> float:
    def both() -> str:
        tr.invalidate(host)
        return tr.to_host(path)

    return per_call(both, n)


def guest_tree(rootfs: str, top: str = "/usr", limit: int = 20000) -> list[str]:
    """Guest paths of everything under `top`, in `find` order (at most `limit`)."""
    out: list[str] = []
    for dirpath, dirnames, filenames in os.walk(rootfs + top):
        guest = dirpath[len(rootfs) :] or "/"
        out.append(guest)
        out.extend(guest + "/" + f for f in dirnames + filenames)
        if len(out) >= limit:
            break
    return out[:limit]


def find_like(rootfs: str) -> list[tuple[str, float]]:
    """lstat of every path under /usr, as `find /usr` makes them: first pass, second pass, no cache."""
    paths = guest_tree(rootfs)
    rows: list[tuple[str, float]] = []
    for cache in (True, False):
        tr = PathTranslator(rootfs, [], cache=cache)
        for run_ in ("1st pass", "2nd pass"):
            t0 = time.perf_counter()
            for p in paths:
                tr.to_host(p, follow_last=False)
            us = (time.perf_counter() - t0) / len(paths) * 1e6
            rows.append((f"{'cache' if cache else 'no cache':8} find /usr ({len(paths)} paths) {run_}", us))
    return rows


def run(rootfs: str, n: int = 20000) -> list[tuple[str, float]]:
    host = rootfs + TYPICAL[0]
    rows: list[tuple[str, float]] = [("baseline: one os.lstat (the unit PRoot pays per component)", per_call(lambda: os.lstat(host), n))]
    rows += find_like(rootfs)
    for cache in (True, False):
        tr = PathTranslator(rootfs, [], cache=cache)
        mode = "cache" if cache else "no cache"
        for path in TYPICAL:
            rows.append((f"{mode:8} warm  {path}", _warm(tr, path, n)))
        if not cache:
            continue
        for path in TYPICAL:
            rows.append((f"{mode:8} cold  {path}", _cold(tr, path, max(n // 10, 10))))
        names = ["/usr/share/doc/" + e for e in sorted(os.listdir(rootfs + "/usr/share/doc"))]
        if names:
            rows.append((f"{mode:8} new leaf in cached dir", _new_leaves(tr, names, max(n // 2000, 3))))
        rel = "x86_64-linux-gnu/libc.so.6"
        rows.append((f"{mode:8} warm  relative {rel}", _warm(tr, rel, n, cwd="/usr/lib")))
        label = f"{mode:8} invalidate(unrelated) + lookup {TYPICAL[0]}"
        rows.append((label, _invalidate_then_lookup(tr, rootfs + "/tmp/x", TYPICAL[0], n)))
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rootfs", help="guest root to resolve in (default: a synthetic tree)")
    ap.add_argument("-n", type=int, default=20000, help="calls per measurement")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        rootfs = args.rootfs or str(build_tree(Path(tmp) / "rootfs"))
        print(f"rootfs: {rootfs}")
        for label, us in run(os.path.realpath(rootfs), args.n):
            print(f"{us:8.2f} µs  {label}")


if __name__ == "__main__":
    main()
