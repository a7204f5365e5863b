"""`ocirun proot` inside `ocirun proot`: the inner one hands its rootfs, bindings
and -0/-i/-k to the outer tracer (ptrace cannot nest), composed with the outer view."""

from __future__ import annotations

from pathlib import Path

from tests.engine.conftest import ok, proot
from tests.helpers import ocirun_argv


def test_nested_proot(debian_rootfs: Path, tmp_path: Path, mode_env: dict) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "f").write_text("outer-bound\n")
    inner = ocirun_argv("proot", "-r", debian_rootfs, "-b", "/data:/w", "-w", "/w",
                        "sh", "-c", "cat /etc/debian_version | cut -d. -f1; cat f; pwd; exit 6")
    cp = proot("-r", "/", "-b", f"{data}:/data", *inner, env=mode_env)
    assert cp.returncode == 6, cp.stderr
    assert cp.stdout == "12\nouter-bound\n/w\n"


def test_nested_extensions_are_applied(tmp_path: Path, mode_env: dict) -> None:
    """As under PRoot: the inner -0/-i/-k hold for the inner command, the outer ones around it."""
    os_file = tmp_path / "owned"
    inner = ocirun_argv("proot", "-0", "-k", "9.9", "/bin/sh", "-c",
                        f"id -u; uname -r; touch {os_file}; chown 0:0 {os_file}; stat -c %u {os_file}")
    cp = proot(*inner, env=mode_env)
    assert ok(cp) == "0\n9.9\n0\n" and "not applied" not in cp.stderr
    script = " ".join(f"'{w}'" for w in ocirun_argv("proot", "-i", "1234:1234", "-k", "8.8", "/bin/sh", "-c",
                                                      "id -u; uname -r"))
    out = ok(proot("-0", "/bin/sh", "-c", f"{script}; id -u; uname -r", env=mode_env))
    assert out.splitlines()[:3] == ["1234", "8.8", "0"] and out.splitlines()[3] != "8.8"


def test_three_levels_and_errors(debian_rootfs: Path) -> None:
    inner = ocirun_argv("proot", "-r", debian_rootfs, "no-such-cmd")
    middle = ocirun_argv("proot", "-r", "/", *inner)
    cp = proot("-r", "/", *middle)
    assert cp.returncode == 127
    assert "no-such-cmd" in cp.stderr
    out = ok(proot("-r", "/", *ocirun_argv("proot", "-r", "/", *ocirun_argv("proot", "-r", debian_rootfs,
                                                                           "cat", "/etc/debian_version"))))
    assert out.startswith("12.")


def test_ptrace_not_permitted_is_one_line(bb_root: Path) -> None:
    """Without the nesting hand-off the inner ocirun cannot ptrace (its child is
    already traced): the failure must name the cause in one line."""
    from tests.helpers import assert_one_line_error

    cp = proot("-r", "/", *ocirun_argv("proot", "-r", bb_root, "true"), env={"OCIRUN_NO_NEST": "1"})
    line = assert_one_line_error(cp, 125)
    assert "ptrace is not permitted" in line


def test_nested_port_map_and_link2symlink(tmp_path: Path, mode_env: dict) -> None:
    """The inner -p, -n and -l hold for the inner command, as under PRoot (they were
    dropped with a warning): its server's port is mapped on the host, its hard links
    are emulated with symlinks."""
    import socket
    import subprocess
    import time

    from tests.helpers import ocirun_env

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        host_port = s.getsockname()[1]
    server = ("import socket; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
              "s.bind(('127.0.0.1', 7)); s.listen(1); print('listening', s.getsockname()[1], flush=True); "
              "c, _ = s.accept(); c.sendall(b'hi ' + c.recv(10)); c.close()")
    inner = ocirun_argv("proot", "-p", f"7:{host_port}", "-n", "python3", "-c", server)
    argv = ocirun_argv("proot", "-r", "/", *inner)
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=ocirun_env(mode_env), stdin=subprocess.DEVNULL)
    try:
        assert proc.stdout.readline() == "listening 7\n"  # the guest sees its own port
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", host_port), timeout=10) as c:
                    c.sendall(b"host")
                    assert c.recv(20) == b"hi host"
                break
            except ConnectionRefusedError:
                assert time.monotonic() < deadline, "the mapped port never listened"
                time.sleep(0.1)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0 and "not applied" not in err, err

    work = tmp_path / "w"
    work.mkdir()
    (work / "f").write_text("x\n")
    inner = ocirun_argv("proot", "-l", "-w", str(work), "sh", "-c", "ln f g && cat g && stat -c %h f")
    cp = proot("-r", "/", *inner, env=mode_env)
    assert ok(cp) == "x\n2\n" and "not applied" not in cp.stderr
    assert (work / "g").is_symlink() and (work / "f").is_symlink()  # emulated: symlinks on the host
