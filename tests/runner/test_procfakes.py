"""/proc files Android hides get plausible stand-ins in a container (as proot-distro gives them).

The hiding is imposed on x86_64 by tests/helpers/hideproc.py (a socket bound over each
file in a private mount namespace: open() fails, as SELinux makes it fail on Android).
"""

from __future__ import annotations

import subprocess

from ocirun.run.procfakes import FAKES
from tests.helpers import ocirun_argv, ocirun_env
from tests.helpers.hideproc import hide_argv
from tests.helpers.trees import HOST_BUSYBOX

SCRIPT = r"""
for f in /proc/stat /proc/loadavg /proc/uptime /proc/version /proc/vmstat \
         /proc/sys/kernel/cap_last_cap /proc/sys/fs/inotify/max_user_watches; do
    head -c 4096 "$f" > /dev/null || echo "unreadable $f"
done
head -1 /proc/stat; cat /proc/uptime /proc/loadavg /proc/sys/kernel/cap_last_cap /proc/version
/busybox top -bn1 | head -3 | cut -c1-40
/busybox ps -o pid,comm | head -2
echo done
"""


def _run(oc, hide: bool) -> subprocess.CompletedProcess:
    argv = ocirun_argv("--root", oc.root, "run", "--rm", "-v", f"{HOST_BUSYBOX}:/busybox:ro",
                       oc.images.debian, "sh", "-c", SCRIPT)
    if hide:
        argv = hide_argv(list(FAKES), argv)
    return subprocess.run(argv, env=ocirun_env(), capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)


def test_hidden_proc_files_are_served(oc) -> None:
    cp = _run(oc, hide=True)
    assert cp.returncode == 0, cp.stderr
    lines = cp.stdout.splitlines()
    assert not [line for line in lines if line.startswith("unreadable")], cp.stdout
    cpu = lines[0].split()
    assert cpu[0] == "cpu" and len(cpu) == 11 and all(f.isdigit() for f in cpu[1:])
    up, idle = (float(x) for x in lines[1].split())
    assert up > 0 and idle >= 0
    assert len(lines[2].split()) == 5 and lines[3] == "40"
    assert lines[4].startswith("Linux version ") and "ocirun@localhost" in lines[4]
    assert lines[5].startswith("Mem:") and lines[6].startswith("CPU:"), lines
    assert lines[7].startswith("Load average: 0.12 0.07 0.02"), lines  # busybox top read the fake
    assert lines[8].split() == ["PID", "COMMAND"] and lines[-1] == "done"


def test_real_files_when_the_host_shows_them(oc) -> None:
    cp = _run(oc, hide=False)
    assert cp.returncode == 0, cp.stderr
    lines = cp.stdout.splitlines()
    with open("/proc/version") as f:
        assert lines[4] == f.read().strip()
    assert "ocirun@localhost" not in cp.stdout and "0.12 0.07 0.02" not in cp.stdout
