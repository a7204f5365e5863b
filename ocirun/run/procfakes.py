"""Stand-ins for the /proc files Android hides from apps, as proot-distro provides them.

Android's SELinux policy refuses an app /proc/stat, /proc/loadavg, /proc/uptime,
/proc/version, /proc/vmstat and some /proc/sys files; `top`, `ps`, `free`, `uptime`
and package scripts then fail. For each such file the host does not let us read,
the container gets a plausible one (bound over the host's /proc), made from what
the kernel still tells an app: the clocks, uname, the CPU count. Where the host
shows the real file, the guest sees the real file.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

_VMSTAT_KEYS = (
    "nr_free_pages", "nr_inactive_anon", "nr_active_anon", "nr_inactive_file", "nr_active_file",
    "nr_dirty", "nr_writeback", "nr_mapped", "pgpgin", "pgpgout", "pswpin", "pswpout",
    "pgalloc_normal", "pgfree", "pgfault", "pgmajfault", "oom_kill",
)


def _uptime() -> float:
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def _stat() -> str:
    ncpu = os.cpu_count() or 1
    ticks = int(_uptime() * 100)
    lines = [f"cpu  {ticks // 10 * ncpu} 0 {ticks // 20 * ncpu} {ticks * ncpu} 0 0 0 0 0 0"]
    lines += [f"cpu{i} {ticks // 10} 0 {ticks // 20} {ticks} 0 0 0 0 0 0" for i in range(ncpu)]
    lines += ["intr 0", "ctxt 0", f"btime {int(time.time() - _uptime())}", "processes 1",
              "procs_running 1", "procs_blocked 0", "softirq 0 0 0 0 0 0 0 0 0 0 0"]
    return "\n".join(lines) + "\n"


def _version() -> str:
    u = os.uname()
    return f"Linux version {u.release} (ocirun@localhost) (gcc, GNU ld) {u.version}\n"


# guest path -> contents, made when the container's process starts
FAKES: dict[str, Callable[[], str]] = {
    "/proc/stat": _stat,
    "/proc/loadavg": lambda: "0.12 0.07 0.02 1/128 1000\n",
    "/proc/uptime": lambda: f"{_uptime():.2f} {_uptime() * (os.cpu_count() or 1) * 0.9:.2f}\n",
    "/proc/version": _version,
    "/proc/vmstat": lambda: "".join(f"{k} 0\n" for k in _VMSTAT_KEYS),
    "/proc/sys/kernel/cap_last_cap": lambda: "40\n",
    "/proc/sys/fs/inotify/max_user_watches": lambda: "8192\n",
}


def hidden(path: str) -> bool:
    """True if this process cannot read `path` (refused, or missing)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return True
    try:
        os.read(fd, 1)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


def write_fakes(directory: Path) -> list[tuple[str, str]]:
    """Write a stand-in under `directory` for each hidden /proc file: [(host file, guest path)]."""
    made = []
    for guest, contents in FAKES.items():
        if not hidden(guest):
            continue
        host = directory / guest.lstrip("/").replace("/", "_")
        directory.mkdir(parents=True, exist_ok=True)
        host.write_text(contents())
        made.append((str(host), guest))
    return made
