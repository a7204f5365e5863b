"""`--help` of ocirun and of every subcommand reads like docker's (QA sweep)."""

from __future__ import annotations

import pytest

from ocirun.cli import COMMANDS
from tests.helpers import run_ocirun

SUBCOMMANDS = sorted(set(COMMANDS) - {"proot"}) + ["container ls", "image prune", "system df"]


def test_top_level_help_groups_commands_like_docker() -> None:
    cp = run_ocirun("--help")
    assert cp.returncode == 0, cp.stderr
    text = cp.stdout
    assert text.lstrip("\n").startswith("Usage:  ocirun [OPTIONS] COMMAND")
    for title in ("Common Commands:", "Management Commands:", "Commands:", "Global Options:"):
        assert f"\n{title}\n" in text, title
    assert "Run 'ocirun COMMAND --help' for more information on a command." in text
    assert "..." not in text.split("Global Options:")[0].replace("[ARG...]", "")  # no truncated summaries
    for name in COMMANDS:
        assert f"\n  {name} " in text, name


@pytest.mark.parametrize("words", SUBCOMMANDS)
def test_subcommand_help(words: str) -> None:
    cp = run_ocirun(*words.split(), "--help")
    assert cp.returncode == 0, cp.stderr
    lines = cp.stdout.splitlines()
    assert lines[0] == "" and lines[1].startswith("Usage:  ocirun "), cp.stdout
    description = lines[lines.index("", 2) + 1]
    assert description and not description.startswith((" ", "Options")), cp.stdout
    assert "Options:" in cp.stdout or "Container:" in cp.stdout
    assert "Usage: ocirun" not in cp.stdout  # click's own usage line is gone


def test_run_help_groups_options_and_lists_ignored_flags() -> None:
    text = run_ocirun("run", "--help").stdout
    assert text.lstrip("\n").startswith("Usage:  ocirun run [OPTIONS] IMAGE [COMMAND] [ARG...]")
    for title in ("Container:", "Image:", "Filesystem:", "Network"):
        assert f"\n{title}" in text
    assert "  -v, --volume list" in text and "      --rm " in text
    assert "--privileged" in text.split("Accepted and ignored")[1]


def test_missing_argument_names_the_docker_metavar() -> None:
    cp = run_ocirun("rm")
    assert cp.returncode == 125
    assert "Missing argument 'CONTAINER [CONTAINER...]'" in cp.stderr


def test_group_subcommand_usage_names_the_path_typed() -> None:
    text = run_ocirun("container", "ls", "--help").stdout
    assert "\nUsage:  ocirun container ls [OPTIONS]\n" in text
    assert "Aliases:\n  ocirun container ls, ocirun ps\n" in text
    assert "\nUsage:  ocirun container run [OPTIONS] IMAGE" in run_ocirun("container", "run", "--help").stdout
