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




# -- the tracer killed in the middle of a package install ----------------------------------

PKG = "ocirun-fault-test"


def _build_deb(dest: Path) -> Path:
    """A local .deb: 300 files and a postinst that changes owners and modes (fake root)."""
    src = dest / "src"
    share = src / "usr/share" / PKG
    share.mkdir(parents=True)
    for i in range(300):
        (share / f"f{i}").write_text(f"file {i}\n" * 50)
    (src / "DEBIAN").mkdir()
    (src / "DEBIAN/control").write_text(
        f"Package: {PKG}\nVersion: 1.0\nArchitecture: all\nMaintainer: t <t@example.org>\nDescription: test\n"
    )
    post = src / "DEBIAN/postinst"
    post.write_text(f"#!/bin/sh\nset -e\nchown 12:34 /usr/share/{PKG}/f0\nchmod 4750 /usr/share/{PKG}/f1\n")
    post.chmod(0o755)
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", src, dest / "t.deb"],
                   check=True, capture_output=True)
    os.chmod(dest, 0o755)
    return dest


def _fingerprint(tree: Path) -> list[tuple]:
    out = []
    for dirpath, dirnames, filenames in os.walk(tree):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            st = os.lstat(os.path.join(dirpath, name))
            out.append((dirpath, name, st.st_mode, st.st_size, st.st_mtime_ns, st.st_ino))
    return out


@pytest.mark.slow
def test_tracer_killed_at_random_moments_of_a_package_install(oc, tmp_path):
    import random
    import sqlite3
    import time

    debs = _build_deb(tmp_path / "debs")
    image_root = Path(oc("inspect", "-f", "{{.Rootfs}}", oc.images.debian).stdout.strip())
    before = _fingerprint(image_root)
    script = f"dpkg --configure -a; dpkg -i /debs/t.deb && stat -c %u:%g /usr/share/{PKG}/f0"
    cid = oc("create", "-v", f"{debs}:/debs:ro", oc.images.debian, "sh", "-c", script).stdout.strip()
    assert len(cid) == 64
    db = oc.root / "containers" / cid / "fakeroot.db"
    start = ocirun_argv("--root", oc.root, "start", "-a", cid)

    t0 = time.monotonic()
    first = subprocess.run(start, env=ocirun_env(), capture_output=True, text=True, timeout=300)
    one_run = time.monotonic() - t0
    assert first.returncode == 0 and first.stdout.strip().endswith("12:34"), first.stderr
    rng = random.Random(13)
    # 50 kills, as the issue asks; each costs about half an install plus a start-up,
    # so the budget follows the machine's speed (a quiet 2-vCPU machine needs ~35 s).
    kills, deadline = 0, time.monotonic() + max(120.0, 60 * one_run)
    while kills < 50 and time.monotonic() < deadline:
        proc = subprocess.Popen(start, env=ocirun_env(), start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.05, one_run))
        proc.kill()
        proc.wait()
        kills += 1
        settle = time.monotonic() + 10
        while (left := _session_left(proc.pid)) and time.monotonic() < settle:
            time.sleep(0.05)
        assert not left, f"after kill {kills}: {left}"
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",), f"after kill {kills}"
    print(f"{kills} kills; one uninterrupted install takes {one_run:.1f} s")
    assert kills == 50, f"only {kills} kills in the time budget (one run takes {one_run:.1f} s)"
    final = subprocess.run(start, env=ocirun_env(), capture_output=True, text=True, timeout=300)
    assert final.returncode == 0 and final.stdout.strip().endswith("12:34"), final.stderr
    assert _fingerprint(image_root) == before, "the image tree changed"
    oc("rm", "-f", cid)


# -- a full disk -------------------------------------------------------------------------------

DISK_FULL_SCRIPT = r"""
oc() { "$PY" -m ocirun --root "$MNT/root" "$@"; }
oc pull -q "$BIG" 2>"$ERR"; echo "pull-big=$? $(cat "$ERR")"
echo "images=$(oc images -q | wc -l) staging=$(ls "$MNT/root/tmp" | grep -vc '^partial$')"
oc system check | sed 's/^/check: /'
oc pull -q "$SMALL" >/dev/null; echo "pull-small=$?"
head -c $(( $(stat -f -c '%a*%S' "$MNT") - (1 << 20) )) /dev/zero > "$MNT/filler" 2>/dev/null
oc pull -q "$BIG" 2>"$ERR"; echo "pull-download=$? $(cat "$ERR")"
rm -f "$MNT/filler"
echo "images-after=$(oc images -q | wc -l)"
oc run --name c "$SMALL" sh -c '
  dd if=/dev/zero of=/fill bs=64k count=1000 2>/dev/null; echo "dd=$?"
  echo x >> /etc/passwd; echo "append=$?"
  chown 5:5 /bin/busybox; echo "chown=$?"
  rm /fill; exit 3' 2>&1; echo "run=$?"
oc run --rm "$SMALL" sh -c 'cat /etc/passwd; ls -ln /bin/busybox' 2>&1
oc system check | sed 's/^/check: /'
"""


@pytest.fixture(scope="module")
def random_image(registry_images, tmp_path_factory) -> str:
    """An image whose one layer is 5 MiB that does not compress."""
    from tests.registry.regserver import ImageSpec, build_layout, push

    layout = tmp_path_factory.mktemp("random") / "layout"
    build_layout(layout, [ImageSpec("linux/amd64", [{"random": ("file", os.urandom(5 << 20), 0o644)}])], tag="1")
    push(layout, registry_images.registry, "test/random:1", tag="1")
    return f"{registry_images.host}/test/random:1"


def test_disk_full_during_pull_unpack_copy_up_and_fake_root(tmp_path, registry_images, random_image):
    """A 7 MiB tmpfs store: the 5 MiB image downloads but cannot unpack (one clear
    line, nothing listed, nothing staged, no damage); busybox still pulls; with 1 MiB
    left the download itself fails (one line, only busybox listed); a guest
    that fills the disk gets ENOSPC for its copy-ups and fake-root chowns, its image
    is unchanged, and the store stays consistent."""
    import sys

    from tests.helpers.smallfs import in_tmpfs

    env = ocirun_env({"PY": sys.executable, "MNT": str(tmp_path / "mnt"), "ERR": str(tmp_path / "err"), "BIG": random_image,
                      "SMALL": registry_images.busybox})
    cp = subprocess.run(in_tmpfs(tmp_path / "mnt", "7m", ["sh", "-c", DISK_FULL_SCRIPT]), env=env,
                        capture_output=True, text=True, timeout=300)
    out = cp.stdout
    assert "pull-big=125 ocirun: " in out and "no space left" in out, out + cp.stderr
    assert out.count("\npull-big") == 0 and "Traceback" not in out + cp.stderr
    assert "images=0 staging=0" in out and "pull-small=0" in out, out
    assert "pull-download=125 ocirun: " in out and "images-after=1" in out, out  # 1 MiB left: the download fails
    assert out.count("check: no damage found") == 2, out
    for step in ("append", "chown"):
        assert f"{step}=1" in out, out
    assert out.count("No space left on device") >= 2 and "internal error" not in out, out
    assert "run=3" in out and "root:x:0:0:root:/root:/bin/sh\n-rwxr-xr-x" in out, out
    assert " 0        0 " in out.split("run=3")[1], out


def test_output_to_a_full_device_keeps_the_exit_status(tmp_path):
    """stdout or stderr on a full disk (/dev/full): the error line cannot be written,
    but the documented exit status still says what happened, not Python's 120 or 1."""
    root = tmp_path / "store"
    with open("/dev/full", "w") as full:
        err_full = subprocess.run(ocirun_argv("--root", root, "rmi", "no-such-image"), env=ocirun_env(),
                                  stdout=subprocess.PIPE, stderr=full, text=True, timeout=60)
        out_full = subprocess.run(ocirun_argv("--root", root, "images"), env=ocirun_env(),
                                  stdout=full, stderr=subprocess.PIPE, text=True, timeout=60)
    assert err_full.returncode == 125 and err_full.stdout == ""
    assert out_full.returncode == 125 and out_full.stderr == "ocirun: no space left on device\n", out_full.stderr
