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
