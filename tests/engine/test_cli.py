"""`ocirun proot`'s command line: PRoot's options, exit statuses, one-line errors."""

from __future__ import annotations

from pathlib import Path

from tests.engine.conftest import ok, proot
from tests.helpers import assert_one_line_error


def test_version_and_help() -> None:
    v = proot("-V")
    assert v.returncode == 0 and "proot" in v.stdout.lower()
    h = proot("--help")
    assert h.returncode == 0
    for opt in ("--rootfs", "--bind", "--mount", "--pwd", "--cwd", "--verbose", "-R", "-S", "--kill-on-exit"):
        assert opt in h.stdout, opt
    assert proot("--usage").returncode == 0


def test_options_after_the_command_belong_to_the_guest(bb_root: Path) -> None:
    out = ok(proot("-r", bb_root, "ls", "-l", "-d", "/bin"))
    assert out.startswith("d"), out  # -l reached ls
    out = ok(proot("-r", bb_root, "echo", "-r", "-v", "--help"))
    assert out == "-r -v --help\n"


def test_default_command_is_bin_sh(bb_root: Path) -> None:
    cp = proot("-r", bb_root, input="echo from-sh $0\n")
    assert ok(cp) == "from-sh /bin/sh\n"


def test_exit_status_of_the_guest(bb_root: Path) -> None:
    assert proot("-r", bb_root, "sh", "-c", "exit 42").returncode == 42
    assert proot("-r", bb_root, "sh", "-c", "kill -9 $$").returncode == 128 + 9
    assert proot("-r", bb_root, "sh", "-c", "kill -TERM $$").returncode == 128 + 15


def test_missing_rootfs(tmp_path: Path) -> None:
    line = assert_one_line_error(proot("-r", tmp_path / "nope", "true"))
    assert "nope" in line and "rootfs" in line


def test_command_not_found_is_127(bb_root: Path) -> None:
    line = assert_one_line_error(proot("-r", bb_root, "no-such-command"), 127)
    assert "no-such-command" in line and "not found" in line
    assert_one_line_error(proot("-r", bb_root, "/no/such/path"), 127)


def test_command_not_executable_is_126(bb_root: Path) -> None:
    line = assert_one_line_error(proot("-r", bb_root, "/etc/passwd"), 126)
    assert "/etc/passwd" in line
    assert_one_line_error(proot("-r", bb_root, "/etc"), 126)


def test_bad_bind_spec(bb_root: Path) -> None:
    line = assert_one_line_error(proot("-r", bb_root, "-b", "/tmp:relative", "true"))
    assert "-b" in line or "bind" in line


def test_missing_bind_host_is_skipped(bb_root: Path) -> None:
    ok(proot("-r", bb_root, "-b", "/no/such/host/path:/x", "true"))


def test_pwd_option(bb_root: Path) -> None:
    assert ok(proot("-r", bb_root, "-w", "/etc", "pwd")) == "/etc\n"
    assert ok(proot("-r", bb_root, "--cwd=/usr/bin", "pwd")) == "/usr/bin\n"


def test_verbose_trace_names_syscalls(bb_root: Path) -> None:
    cp = proot("-r", bb_root, "-v", "2", "cat", "/etc/passwd")
    ok(cp)
    assert "openat" in cp.stderr or "open" in cp.stderr
    quiet = proot("-r", bb_root, "-v", "-1", "true")
    assert quiet.returncode == 0 and quiet.stderr == ""
