"""The benchmark's output: the markdown tables (times and ratios; stops and µs per
stop), the machine line every table carries, and the README block they replace.
Kept apart from run.py, which measures; these only format what it measured."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
README = REPO / "benchmarks" / "README.md"
TABLE_BEGIN = "<!-- bench:table -->"
TABLE_END = "<!-- /bench:table -->"

Cells = dict[tuple[str, str], Any]  # (workload, runner) -> run.Cell (its .median)


@dataclass
class Stops:
    """One traced run of a PRoot-like runner: its tracer's stops and syscalls."""

    stops: int
    syscalls: int


def strace_counts(text: str) -> dict[str, int]:
    """`strace -c` summary lines -> calls per syscall name."""
    calls: dict[str, int] = {}
    for line in text.splitlines():
        f = line.split()
        if len(f) >= 5 and f[3].isdigit() and f[-1] != "total":
            calls[f[-1]] = int(f[3])
    return calls



def stops_table(cells: Cells, stops: dict[tuple[str, str], Stops],
                workloads: list[Any], runners: list[Any]) -> str:
    """Per row and PRoot-like runner: stops, tracer syscalls per stop, µs per stop."""
    traced = [r.name for r in runners if r.name != "native"]
    head = ["workload", *[f"{n}: stops / syscalls per stop / µs per stop" for n in traced]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for wl in workloads:
        if not any((wl.name, n) in stops for n in traced):
            continue
        native = cells.get((wl.name, "native"))
        base = native.median if native else None
        row = [wl.name]
        for n in traced:
            st, cell = stops.get((wl.name, n)), cells.get((wl.name, n))
            med = cell.median if cell else None
            if st is None:
                row.append("–")
                continue
            us = f"{(med - base) / st.stops * 1e6:.1f}" if med is not None and base is not None else "–"
            row.append(f"{st.stops:,} / {st.syscalls / st.stops:.1f} / {us}")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------- table


def fmt_time(t: float | None) -> str:
    if t is None:
        return "fail"
    return f"{t * 1000:.1f} ms" if t < 1 else f"{t:.2f} s"


def fmt_ratio(a: float | None, b: float | None) -> str:
    return "–" if a is None or b is None or b == 0 else f"{a / b:.2f}x"


def table(cells: Cells, workloads: list[Any], runners: list[Any]) -> str:
    subject = next((r for r in runners if r.subject), None)
    cols = [r.name for r in runners]
    head = ["workload", *cols]
    if subject:
        head += [f"{subject.name}/native", f"{subject.name}/PRoot (best)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for wl in workloads:
        row = [wl.name]
        for c in cols:
            cell = cells.get((wl.name, c))
            row.append("n/a" if cell is None else fmt_time(cell.median))
        if subject:
            med = {c: cells[(wl.name, c)].median for c in cols if (wl.name, c) in cells}
            anchors = [med.get(r.name) for r in runners if r.anchor and med.get(r.name)]
            s = med.get(subject.name)
            row += [fmt_ratio(s, med.get("native")), fmt_ratio(s, min(anchors) if anchors else None)]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True).stdout.strip() or "?"
    except OSError:
        commit = "?"
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    sys.path.insert(0, str(REPO))
    try:
        import ocirun.engine._fastpath  # noqa: F401 (is the compiled fast path built?)

        commit += " (fast path built)"
    except ImportError:
        commit += " (fast path NOT built: pure-Python loop)"
    finally:
        sys.path.pop(0)
    return (f"{os.cpu_count()} CPUs, {model}, Linux {platform.release()}, load {load}, "
            f"ocirun {commit}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")


def write_readme(text: str) -> None:
    block = f"{TABLE_BEGIN}\n{text}\n{TABLE_END}"
    if README.exists():
        old = README.read_text()
        if TABLE_BEGIN in old and TABLE_END in old:
            pre, rest = old.split(TABLE_BEGIN, 1)
            post = rest.split(TABLE_END, 1)[1]
            README.write_text(pre + block + post)
            return
        README.write_text(old.rstrip() + "\n\n## Latest results\n\n" + block + "\n")
        return
    README.write_text("# Benchmarks\n\n## Latest results\n\n" + block + "\n")
