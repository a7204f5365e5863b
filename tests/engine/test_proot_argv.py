"""`ocirun proot`'s command line read without click (cli/proot_argv.py) gives what click gives.

The fast reader must take every command line exactly as the click command does (values,
the order the options came in, the guest command) and leave anything else to click: its
errors, help and version. Both are run here on the same words.
"""

from __future__ import annotations

import subprocess
import sys

import click
import pytest

from ocirun.cli.proot_argv import parse
from ocirun.cli.proot_cmd import proot as proot_command
from ocirun.cli.proot_rules import ORDER_KEY
from tests.engine.conftest import ok, proot
from tests.helpers import ocirun_env

ACCEPTED = [
    [],
    ["true"],
    ["-r", "/x", "-b", "/a", "-0", "ls", "-l"],
    ["-0b/a", "--rootfs=/y", "--", "-x"],
    ["-v", "3", "-k", "5.0", "-p", "1:2", "-p", "3:4", "true"],
    ["-v", "-1", "-v", "2", "--verbose=0"],
    ["-l", "-n", "--kill-on-exit", "-q", "qemu x", "-w", "w", "-R", "/r", "-S", "/s", "-i", "1:2"],
    ["-r=/x", "-m", "/a:/b", "--mount", "/c", "--bind=/d", "--pwd", "/", "--cwd=/tmp", "-", "x"],
    ["-0", "-i", "0:0", "-S", "/s", "-r", "/r", "-b", "/:/", "-i", "3:4", "sh", "-c", "--", "-r"],
    ["-r", "-0", "-0"],  # a value that looks like an option is a value
    ["--", "--help"],
    ["-rb", "x"],
    ["-0v7", "--link2symlink", "--netcoop", "--root-id", "--change-id", "1:1", "--port", "8:9", "-"],
    ["--kernel-release=\\L\\N\\R\\V\\M\\D\\-1\\", "--qemu", "", "id"],
    ["-v", " 3 ", "true"],
]

LEFT_TO_CLICK = [
    ["--help"], ["-h"], ["--usage"], ["-V"], ["--version"], ["--about"], ["-0h"], ["-r", "/x", "-V", "true"],
    ["-x"], ["--bogus"], ["--root"], ["-r"], ["-0r"], ["-v", "abc"], ["-v"], ["--root-id=1"], ["-0", "--kill-on-exit=yes"],
]


def _click(argv: list[str]) -> tuple[dict, list[str], tuple[str, ...]]:
    ctx = proot_command.make_context("proot", list(argv))
    params = dict(ctx.params)
    return params, ctx.meta[ORDER_KEY], tuple(params.pop("command"))


@pytest.mark.parametrize("argv", ACCEPTED, ids=" ".join)
def test_read_as_click_reads_it(argv: list[str]) -> None:
    parsed = parse(argv)
    assert parsed is not None
    options, order, command = _click(argv)
    assert (parsed.options, parsed.order, parsed.command) == (options, order, command)


@pytest.mark.parametrize("argv", LEFT_TO_CLICK, ids=" ".join)
def test_errors_help_and_version_are_left_to_click(argv: list[str], capsys: pytest.CaptureFixture) -> None:
    assert parse(argv) is None
    with pytest.raises((click.exceptions.Exit, click.UsageError)):
        _click(argv)


def test_a_plain_run_does_not_import_click(bb_root) -> None:
    """`ocirun proot -r R CMD` starts without click (its import is most of the start-up)."""
    cp = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "ocirun", "proot", "-r", str(bb_root), "-w", "/", "true"],
        env=ocirun_env(None), capture_output=True, text=True, timeout=60,
    )
    assert cp.returncode == 0, cp.stderr
    imported = [line.split("|")[-1].strip() for line in cp.stderr.splitlines() if line.startswith("import time:")]
    assert "ocirun.engine.loop" in imported  # (the engine did run)
    assert "click" not in imported


def test_errors_are_click_s(bb_root) -> None:
    cp = proot("-r", bb_root, "-v", "many", "true")
    assert cp.returncode == 125
    assert cp.stderr == ("ocirun: Invalid value for '-v' / '--verbose': 'many' is not a valid integer. "
                         "(see 'ocirun proot --help')\n")
    assert ok(proot("-r", bb_root, "-v", "-1", "-0", "id", "-u")) == "0\n"
