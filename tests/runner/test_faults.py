"""Faults of the engine: many processes, many threads, signal floods, a guest out of
memory, the tracer killed mid-install, a full disk. Exit statuses as natively, no
process left behind, tracer memory flat, the store usable after."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.helpers import ocirun_argv, ocirun_env
from tests.helpers.rss import MiB, run_measured
from tests.helpers.trees import HOST_BUSYBOX

THREADS_C = r"""
#include <pthread.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>
static int done;
static void *work(void *arg) {
    struct stat st;
    (void)arg;
    usleep(20000);
    if (stat("/bin/sh", &st) == 0) __sync_fetch_and_add(&done, 1);
    return NULL;
}
int main(void) {
    static pthread_t t[1000];
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setstacksize(&a, 65536);
    for (int i = 0; i < 1000; i++)
        if (pthread_create(&t[i], &a, work, NULL) != 0) { printf("create %d failed\n", i); return 3; }
    for (int i = 0; i < 1000; i++) pthread_join(t[i], NULL);
    printf("%d\n", done);
    return done == 1000 ? 0 : 4;
}
"""


def _session_left(sid: int) -> list[str]:
    """Processes still in session `sid` (the ocirun run was its leader)."""
    left = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[3]) == sid and fields[0] != "Z":
            left.append(f"{pid} {stat[:60]}")
    return left


def _proot(root: Path, script: str, env: dict | None = None):
    """`ocirun proot -r ROOT -b /dev /bin/sh -c SCRIPT`, measured."""
    argv = ocirun_argv("proot", "-r", root, "-b", "/dev", "/bin/sh", "-c", script)
    return run_measured(argv, env=ocirun_env(env), timeout=240)


@pytest.mark.slow
def test_10000_short_processes_keep_the_tracer_memory_flat(busybox_rootfs: Path):
    loop = "i=0; while [ $i -lt {n} ]; do ( : ); i=$((i+1)); done; exit 7"
    few = _proot(busybox_rootfs, loop.format(n=10))
    many = _proot(busybox_rootfs, loop.format(n=10000))
    assert (few.returncode, many.returncode) == (7, 7), many.stderr
    assert many.maxrss - few.maxrss <= 8 * MiB, (
        f"tracer peak RSS {few.maxrss >> 20} MiB after 10 processes, {many.maxrss >> 20} MiB after 10,000"
    )


@pytest.fixture(scope="module")
def threads_prog(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("threads")
    (d / "threads.c").write_text(THREADS_C)
    subprocess.run(["gcc", "-O1", "-static", "-pthread", "-o", d / "threads", d / "threads.c"], check=True)
    os.chmod(d, 0o755)
    return d / "threads"


def test_a_thousand_threads(busybox_rootfs: Path, threads_prog: Path):
    target = busybox_rootfs / "threads"
    target.write_bytes(threads_prog.read_bytes())
    target.chmod(0o755)
    m = _proot(busybox_rootfs, "/threads")
    assert (m.returncode, m.stdout.strip()) == (0, "1000"), m.stderr
    assert m.maxrss < 150 * MiB


def test_signal_floods_keep_exit_statuses(busybox_rootfs: Path):
    """500 children ending at once (a SIGCHLD flood), 300 SIGSTOP/SIGCONT of a child
    and its death by SIGTERM, the shell itself stopped and continued: every status
    as the same busybox gives natively."""
    script = (
        "for i in $(seq 500); do ( exit $((i % 7)) ) & done; wait; "
        "sleep 30 & p=$!; for i in $(seq 300); do kill -STOP $p; kill -CONT $p; done; "
        "kill -TERM $p; wait $p; echo status=$?; "
        "( kill -STOP $$; sleep 0.2; kill -CONT $$ ) & wait; exit 9"
    )
    native = subprocess.run([HOST_BUSYBOX, "sh", "-c", script], capture_output=True, text=True, timeout=60)
    m = _proot(busybox_rootfs, script)
    assert (m.returncode, m.stdout) == (native.returncode, native.stdout) == (9, "status=143\n"), m.stderr


def test_guest_out_of_memory_exits_as_natively(busybox_rootfs: Path):
    """A guest that runs out of memory (under an address-space limit) fails as the
    same busybox does natively; one the kernel kills (SIGKILL, as the OOM killer
    does) is reported as 137."""
    hog = "ulimit -v 200000; exec awk 'BEGIN { s = \"x\"; while (1) s = s s }'"
    native = subprocess.run([HOST_BUSYBOX, "sh", "-c", hog], capture_output=True)
    m = _proot(busybox_rootfs, hog)
    assert native.returncode != 0
    assert m.returncode == native.returncode, m.stderr
    assert m.maxrss < 150 * MiB
    assert _proot(busybox_rootfs, "kill -KILL $$").returncode == 137


def test_nothing_left_after_the_guest_ends(busybox_rootfs: Path):
    """A guest that leaves a background child behind: ocirun ends with the main
    process, and no process of its session survives it."""
    proc = subprocess.Popen(
        ocirun_argv("proot", "-r", busybox_rootfs, "/bin/sh", "-c", "sleep 60 & exit 3"),
        env=ocirun_env(), start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    assert proc.wait(timeout=60) == 3
    import time

    deadline = time.monotonic() + 5
    while _session_left(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = _session_left(proc.pid)
    for line in left:
        os.kill(int(line.split()[0]), 9)
    assert not left, left


