"""`ocirun run`'s common command lines read without click (cli/run_argv.py) give what
click gives, and everything else is left to click. Both read the same words here."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest

from ocirun.cli.run_argv import RUN_OPTIONS, parse
from ocirun.cli.run_cmds import run as run_command
from ocirun.run.options import RawRunArgs
from tests.helpers import ocirun_argv, ocirun_env

# (the group's words, then what click's `run` reads)
ACCEPTED = [
    ([], ["img"]),
    (["run"], ["img"]),
    (["run"], ["--rm", "img", "true"]),
    (["--root", "/s", "-D", "run"], ["-it", "--rm", "img", "sh", "-c", "--rm x"]),
    (["--root=/s", "--debug"], ["img", "--", "-x"]),
    (["run"], ["-e", "A=1", "--env=B", "-eC=3", "-v", "/a:/b", "--volume=/c:/d:ro", "img"]),
    (["run"], ["-dit", "--name", "n", "--name=m", "-w", "/w", "-u", "1:2", "--entrypoint", "", "img"]),
    (["run"], ["--env-file", "f", "--mount", "type=bind,src=/a,dst=/b", "-p", "1:2", "--publish=3:4", "img"]),
    (["run"], ["--hostname", "h", "--platform", "arm64", "--pull=never", "-e", "-v", "img", "--rm"]),
    (["run"], ["--", "img", "x"]),
]

LEFT_TO_CLICK = [
    [],
    ["--root"],
    ["--help"],
    ["--version"],
    ["-h"],
    ["run"],
    ["run", "--help"],
    ["run", "--rm"],
    ["run", "-e"],
    ["run", "--rm=1", "img"],
    ["run", "--privileged", "img"],  # accepted and ignored by click with a warning
    ["run", "-h", "host", "img"],  # -h: the hostname, click's to tell from the group's help
    ["run", "--network", "none", "img"],
    ["run", "--nope", "img"],
    ["run", "-x", "img"],
    ["run", "--", "-img"],
    ["create", "img"],
    ["ps"],
    ["proot", "true"],
]


def _click_params(words: list[str]) -> dict:
    """The parameters click's `run` gives for the words after `run`."""
    ctx = run_command.make_context("run", list(words))
    return ctx.params


@pytest.mark.parametrize(("group", "words"), ACCEPTED)
def test_reads_what_click_reads(group: list[str], words: list[str]) -> None:
    parsed = parse(group + words)
    assert parsed is not None
    params = _click_params(words)
    assert (parsed.image, parsed.command) == (params["image"], params["command"])
    raw = RawRunArgs(image=parsed.image, command=parsed.command, **parsed.options)
    for name in RawRunArgs.__record_fields__:
        if name in params:
            assert getattr(raw, name) == params[name], name
    assert parsed.root == ("/s" if "/s" in group or "--root=/s" in group else None)
    assert parsed.debug == ("-D" in group or "--debug" in group)


@pytest.mark.parametrize("args", LEFT_TO_CLICK)
def test_leaves_the_rest_to_click(args: list[str]) -> None:
    assert parse(args) is None


def test_the_table_is_clicks() -> None:
    """Every option read without click is click's `run` option of the same dest, with the
    same names (or some of them), flag or value, single or multiple."""
    by_dest = {p.name: p for p in run_command.params if isinstance(p, click.Option)}
    for row in RUN_OPTIONS:
        param = by_dest[row.dest]
        assert set(row.names) <= set(param.opts), row
        assert (row.is_flag, row.multiple) == (param.is_flag, param.multiple), row


def test_a_common_run_imports_no_click(oc) -> None:
    """The cached run (benchmarks/run.py's container row) starts without click."""
    cp = subprocess.run([sys.executable, "-X", "importtime", *ocirun_argv("--root", oc.root, "run", "--rm",
                                                                          oc.images.busybox, "true")[1:]],
                        capture_output=True, text=True, env=ocirun_env(), timeout=120, cwd="/",
                        stdin=subprocess.DEVNULL)
    assert cp.returncode == 0, cp.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in cp.stderr.splitlines() if "|" in line}
    assert "ocirun.run.runner" in imported
    assert not imported & {"click", "dataclasses", "typing", "inspect"}
