"""`ocirun proot` follows PRoot 5.4's command line: starting directory, option order,
-k's long form, -q with any command, PRoot's environment variables, the caller's
environment. Each expectation is what PRoot 5.4 printed for the same command."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.engine.conftest import ok, proot
from tests.helpers import fixtures_root, ocirun_argv, ocirun_env
from tests.helpers.trees import make_busybox_tree


@pytest.fixture
def here(tmp_path: Path) -> Path:
    """A world-readable directory to start ocirun from."""
    d = tmp_path / "here"
    d.mkdir()
    for p in (tmp_path, d):
        os.chmod(p, 0o755)
    return d


# ------------------------------------------------------------------ starting directory

def test_starts_in_the_callers_directory(here: Path, mode_env) -> None:
    script = here / "prog"
    script.write_text("#!/bin/sh\necho ran in $(/bin/pwd)\n")
    script.chmod(0o755)
    assert ok(proot("pwd", cwd=here, env=mode_env)) == f"{here}\n"
    assert ok(proot("./prog", cwd=here, env=mode_env)) == f"ran in {here}\n"


def test_relative_w_is_taken_from_the_callers_directory(here: Path) -> None:
    (here / "sub").mkdir()
    assert ok(proot("-w", "sub", "/bin/pwd", cwd=here)) == f"{here}/sub\n"
    assert ok(proot("-w", "..", "/bin/pwd", cwd=here)) == f"{here.parent}\n"


def test_missing_directory_falls_back_to_root_with_a_warning(here: Path, bb_root: Path) -> None:
    cp = proot("-r", bb_root, "/bin/pwd", cwd=here)
    assert ok(cp) == "/\n"
    assert "can't chdir" in cp.stderr and "Traceback" not in cp.stderr
    cp = proot("-r", bb_root, "-w", "/no/such/dir", "/bin/pwd", cwd="/")
    assert ok(cp) == "/\n" and "can't chdir" in cp.stderr


def test_pwd_in_the_guest_environment_is_the_guest_directory(here: Path, bb_root: Path, mode_env) -> None:
    env = {**mode_env, "PWD": "/somewhere/else"}
    out = ok(proot("-r", bb_root, "-w", "/etc", "/bin/sh", "-c", 'echo "$PWD"; pwd', cwd=here, env=env))
    assert out == "/etc\n/etc\n"
    out = ok(proot("-r", bb_root, "/bin/sh", "-c", 'echo "$PWD"; pwd', cwd=here, env=env))
    assert out == "/\n/\n"


# ------------------------------------------------------------------ option order

@pytest.mark.parametrize(("args", "expected"), [
    (["-0", "-i", "1000:1001"], "1000 1001"),
    (["-i", "1000:1001", "-0"], "0 0"),
    (["-i", "5:6", "-i", "7:8"], "7 8"),
])
def test_the_last_identity_option_wins(args: list[str], expected: str) -> None:
    cp = proot(*args, "/bin/sh", "-c", "echo $(id -u) $(id -g)", cwd="/")
    assert ok(cp) == expected + "\n"
    assert "only the last" in cp.stderr


def test_the_last_of_b_to_root_and_r_wins(tmp_path: Path, bb_root: Path) -> None:
    other = make_busybox_tree(tmp_path / "other")
    (other / "marker").write_text("other root\n")
    os.chmod(tmp_path, 0o755)
    assert ok(proot("-r", bb_root, "-b", f"{other}:/", "/bin/cat", "/marker", cwd="/")) == "other root\n"
    cp = proot("-b", f"{other}:/", "-r", bb_root, "/bin/cat", "/marker", cwd="/")
    assert cp.returncode == 1 and "No such file" in cp.stderr


# ------------------------------------------------------------------ -k

def test_k_long_form_with_seven_fields() -> None:
    out = ok(proot("-k", "\\a\\b\\c\\d\\e\\f\\1234\\", "/bin/sh", "-c",
                   "uname -s; uname -n; uname -r; uname -v; uname -m; hostname", cwd="/"))
    assert out.split("\n") == ["a", "b", "c", "d", "e", "b", ""]
    out = ok(proot("-k", "\\\\\\6.1.0\\\\\\\\-1\\", "/bin/sh", "-c", "uname -r; uname -n | wc -c", cwd="/"))
    assert out.split() == ["6.1.0", "1"]  # empty fields are empty, as in PRoot


def test_k_six_fields_is_refused_like_proot() -> None:
    cp = proot("-k", "\\a\\b\\c\\d\\e\\f\\", "/bin/true", cwd="/")
    assert cp.returncode == 125 and "hwcap" in cp.stderr


def test_k_release_longer_than_64_bytes_is_cut() -> None:
    assert ok(proot("-k", "b" * 70, "uname", "-r", cwd="/")) == "b" * 64 + "\n"


def test_root_and_k_hostname_stays_in_the_guest() -> None:
    before = os.uname().nodename
    out = ok(proot("-0", "-k", "6.1", "/bin/sh", "-c",
                   "hostname NEW && hostname && uname -n && cat /proc/sys/kernel/hostname", cwd="/"))
    assert out == "NEW\nNEW\nNEW\n" and os.uname().nodename == before


def test_k_hwcap_field_is_the_auxv_hwcap(mode_env) -> None:
    out = ok(proot("-k", "\\a\\b\\c\\d\\e\\f\\1234\\", "/bin/sh", "-c", "LD_SHOW_AUXV=1 /bin/true",
                   cwd="/", env=mode_env))
    assert "AT_HWCAP:             1234\n" in out


# ------------------------------------------------------------------ the caller's environment

def test_guest_environment_is_exactly_the_callers(here: Path) -> None:
    env = {k: v for k, v in ocirun_env().items() if not k.startswith("LC_")}
    env.update(LANG="C", PWD=str(here))
    cp = subprocess.run([*ocirun_argv("proot", "/usr/bin/env")], env=env, cwd=here, capture_output=True,
                        text=True, timeout=120, stdin=subprocess.DEVNULL)
    guest = dict(line.split("=", 1) for line in ok(cp).splitlines() if "=" in line)
    assert not [k for k in guest if k.startswith("LC_")], guest
    assert {k: v for k, v in guest.items() if k != "_"} == {k: v for k, v in env.items() if k != "_"}


def test_an_lc_ctype_the_caller_set_is_kept(here: Path) -> None:
    out = ok(proot("/bin/sh", "-c", 'echo "$LC_CTYPE"', cwd=here, env={"LANG": "C", "LC_CTYPE": "C"}))
    assert out == "C\n"


# ------------------------------------------------------------------ -q with any command

@pytest.fixture
def arm64_busybox() -> Path:
    path = fixtures_root() / "busybox-static-arm64" / "bin" / "busybox"
    if not path.is_file():
        pytest.fail(f"missing fixture {path} (scripts/fixtures builds it)", pytrace=False)
    return path


def test_q_takes_any_command_with_prootss_argv(arm64_busybox: Path) -> None:
    out = ok(proot("-q", "echo X --", arm64_busybox, "echo", "hi", cwd="/"))
    assert out == f"X -- -0 {arm64_busybox} {arm64_busybox} echo hi\n"
    assert proot("-q", "true", arm64_busybox, cwd="/").returncode == 0
    assert proot("-q", "false", arm64_busybox, cwd="/").returncode == 1


def test_q_gets_files_that_are_neither_elf_nor_script(here: Path) -> None:
    data = here / "data"
    data.write_text("hello\n")
    data.chmod(0o755)
    assert ok(proot("-q", "echo X", data, "arg", cwd="/")) == f"X -0 {data} {data} arg\n"
    assert proot(data, cwd="/").returncode == 126  # without -q: ENOEXEC, as the kernel says


def test_proot_force_foreign_binary() -> None:
    env = {"PROOT_FORCE_FOREIGN_BINARY": "1"}
    true = os.path.realpath(shutil.which("true") or "/bin/true")
    assert ok(proot("-q", "echo X", true, "1", cwd="/", env=env)) == f"X -0 {true} {true} 1\n"
    assert ok(proot("-q", "echo X", true, "1", cwd="/")) == ""


# ------------------------------------------------------------------ PRoot's variables

def test_help_says_what_each_proot_variable_does() -> None:
    text = ok(proot("--help"))
    for name in ("PROOT_NO_SECCOMP", "PROOT_VERBOSE", "PROOT_FORCE_KOMPAT", "PROOT_FORCE_FOREIGN_BINARY",
                 "PROOT_TMP_DIR", "PROOT_DONT_POLLUTE_ROOTFS"):
        assert name in text


def test_proot_verbose_is_the_default_of_v() -> None:
    assert proot("/bin/true", cwd="/").stderr == ""
    cp = proot("/bin/true", cwd="/", env={"PROOT_VERBOSE": "2"})
    assert cp.returncode == 0 and "execve" in cp.stderr
    assert proot("-v", "0", "/bin/true", cwd="/", env={"PROOT_VERBOSE": "2"}).stderr == ""


def test_proot_tmp_dir_holds_ocirun_temporary_files(here: Path) -> None:
    tmp = here / "tmp"
    tmp.mkdir()
    out = ok(proot("-k", "6.1", "/bin/ls", tmp, cwd="/", env={"PROOT_TMP_DIR": str(tmp)}))
    assert out.startswith("ocirun-kompat-"), out


def test_proot_no_seccomp_stops_on_every_syscall() -> None:
    # getpid is never trapped with the seccomp filter: only PROOT_NO_SECCOMP shows it in the trace
    assert "getpid" not in proot("-v", "3", "/bin/sh", "-c", "echo $$", cwd="/").stderr
    cp = proot("-v", "3", "/bin/sh", "-c", "echo $$", cwd="/", env={"PROOT_NO_SECCOMP": "1"})
    assert "getpid" in cp.stderr
