"""Servers that are not registries: one clear error, in bounded time (QA sweep)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time

import pytest

from ocirun.errors import OcirunError
from registry.client import RegistryClient, RetryPolicy
from tests.helpers import assert_one_line_error, ocirun_argv, ocirun_env


def serve(answer: bytes | None) -> tuple[str, threading.Event]:
    """A loopback TCP server that answers every connection with `answer` and closes
    (None: reads and never answers). Returns HOST:PORT and an event that stops it."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    srv.settimeout(0.2)
    stop = threading.Event()
    held: list[socket.socket] = []

    def loop() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            conn.recv(65536)
            if answer is None:
                held.append(conn)
                continue
            conn.sendall(answer)
            conn.close()
        for c in held:
            c.close()
        srv.close()

    threading.Thread(target=loop, daemon=True).start()
    return f"127.0.0.1:{srv.getsockname()[1]}", stop


@pytest.mark.parametrize("answer", [b"\x00\xffgarbage, not HTTP\r\n\r\n", b""])
def test_loopback_garbage_is_not_blamed_on_insecure_settings(answer: bytes) -> None:
    host, stop = serve(answer)
    try:
        client = RegistryClient(host, retry=RetryPolicy(attempts=2, base_delay=0.01))
        with pytest.raises(OcirunError) as exc:
            client.request("GET", "")
    finally:
        stop.set()
    assert "neither plain HTTP nor HTTPS" in exc.value.message
    assert "INSECURE" not in exc.value.message


def test_silent_registry_gives_up_after_two_timeouts() -> None:
    host, stop = serve(None)
    try:
        client = RegistryClient(host, retry=RetryPolicy(attempts=5, base_delay=0.01), timeout=(1.0, 1.0))
        client._probe_https = False  # the probe has its own timeouts; this is about the retries
        t0 = time.monotonic()
        with pytest.raises(OcirunError) as exc:
            client.request("GET", "")
        took = time.monotonic() - t0
    finally:
        stop.set()
    assert "timed out 2 times" in exc.value.message
    assert took < 4, took  # 5 attempts would take at least 5 s


def test_ctrl_c_during_a_pull_is_one_line_130(tmp_path) -> None:
    host, stop = serve(None)
    proc = subprocess.Popen(ocirun_argv("--root", tmp_path / "store", "pull", f"{host}/x/y:1"), env=ocirun_env(),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        time.sleep(2)
        os.killpg(proc.pid, signal.SIGINT)  # what the terminal's Ctrl-C does
        out, err = proc.communicate(timeout=30)
    finally:
        stop.set()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    cp = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    assert assert_one_line_error(cp, 130) == "ocirun: interrupted"
    assert err.startswith("ocirun: ")  # no empty line first (stderr is not a terminal)
