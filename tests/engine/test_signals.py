"""Signals: delivered as without a tracer; ocirun's own death takes the guest with it."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.engine.conftest import ok, proot
from tests.helpers import ocirun_argv, ocirun_env


def _start(*args: str | os.PathLike, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(ocirun_argv("proot", *args), env=ocirun_env(env), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):  # gone before or while read
        return False
    return state not in ("Z", "X")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_signal_to_ocirun_reaches_the_guest(bb_root: Path, cprogs: Path, sig: int, mode_env: dict) -> None:
    p = _start("-r", bb_root, "-b", f"{cprogs}:/c", "/c/signals.static", env=mode_env)
    try:
        assert p.stdout.readline() == "ready\n"
        p.send_signal(sig)
        out, err = p.communicate(timeout=20)
    finally:
        p.kill()
    assert out == f"got signal {int(sig)}\n", err
    assert p.returncode == 0


def test_ctrl_c_to_the_process_group(bb_root: Path, cprogs: Path) -> None:
    """A terminal's Ctrl-C signals the whole foreground group: the guest handles it once."""
    p = _start("-r", bb_root, "-b", f"{cprogs}:/c", "/c/signals.static")
    try:
        assert p.stdout.readline() == "ready\n"
        os.killpg(p.pid, signal.SIGINT)
        out, err = p.communicate(timeout=20)
    finally:
        p.kill()
    assert out == "got signal 2\n", err
    assert p.returncode == 0


def test_unhandled_sigint_kills_the_guest(bb_root: Path) -> None:
    p = _start("-r", bb_root, "sh", "-c", "echo ready; exec sleep 100")
    try:
        assert p.stdout.readline() == "ready\n"
        time.sleep(0.3)
        p.send_signal(signal.SIGINT)
        p.communicate(timeout=20)
    finally:
        p.kill()
    assert p.returncode == 128 + signal.SIGINT


def test_sigkill_of_ocirun_leaves_no_guest_process(bb_root: Path, tmp_path: Path, mode_env: dict) -> None:
    p = _start("-r", bb_root, "-b", "/dev", "-b", f"{tmp_path}:/w", "sh", "-c",
               "sleep 1000 & echo $! > /w/pids; (sleep 1000; true) & echo $! >> /w/pids; echo $$ >> /w/pids; "
               "echo ready; wait", env=mode_env)
    try:
        assert p.stdout.readline() == "ready\n"
        pids = [int(x) for x in (tmp_path / "pids").read_text().split()]
        assert len(pids) == 3 and all(_alive(pid) for pid in pids)
        p.kill()
        p.wait(timeout=10)
        deadline = time.time() + 10
        while time.time() < deadline and any(_alive(pid) for pid in pids):
            time.sleep(0.05)
        assert not [pid for pid in pids if _alive(pid)]
    finally:
        p.kill()


def test_kill_on_exit(bb_root: Path, tmp_path: Path) -> None:
    start = time.time()
    cp = proot("--kill-on-exit", "-r", bb_root, "-b", "/dev", "-b", f"{tmp_path}:/w", "sh", "-c",
               "sleep 30 & echo $! > /w/pid; exit 5")
    assert cp.returncode == 5
    assert time.time() - start < 20
    assert not _alive(int((tmp_path / "pid").read_text()))


def test_background_process_outlives_the_first_one(bb_root: Path, tmp_path: Path) -> None:
    """Without --kill-on-exit ocirun waits for the whole tree, as PRoot does."""
    cp = proot("-r", bb_root, "-b", "/dev", "-b", f"{tmp_path}:/w", "sh", "-c", "(sleep 0.5; echo late > /w/late) & exit 3")
    assert cp.returncode == 3
    assert (tmp_path / "late").read_text() == "late\n"


def test_stop_and_continue_a_guest_child(bb_root: Path, mode_env: dict) -> None:
    out = ok(proot("-r", bb_root, "-b", "/dev", "-b", "/proc", "sh", "-c",
                   "sleep 0.3 & pid=$!; kill -STOP $pid; sleep 0.5; "
                   "grep -q '^State:.*T' /proc/$pid/status 2>/dev/null; kill -CONT $pid; wait $pid; echo done=$?",
                   env=mode_env))
    assert out == "done=0\n"
