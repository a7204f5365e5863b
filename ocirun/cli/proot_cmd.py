"""`ocirun proot [OPTIONS] [COMMAND...]`: PRoot's command line on ocirun's engine.

Options are PRoot's (see its manual): the regular ones here, the extension
options (-0, -i, -k, -p, -n, -l, -q) in ocirun/cli/proot_ext.py, with the plan
hooks that turn them into engine extensions. Everything
after the first non-option word is the guest command (`ocirun proot -r R ls -l`).
"""

from __future__ import annotations

from collections.abc import Callable

import click

from ocirun import __version__
from ocirun.cli.proot_ext import OPTIONS as EXTENSION_OPTIONS
from ocirun.cli.proot_options import ALIAS_OPTIONS, REGULAR_OPTIONS, ProotOption
from ocirun.cli.proot_rules import ORDER_KEY, help_epilog
from ocirun.cli.proot_run import build_engine_plan, run_guest

VERSION_TEXT = f"""ocirun proot {__version__}: PRoot's interface on ocirun's ptrace engine.
A user-space implementation of chroot, mount --bind and binfmt_misc, re-imagined in Python.
Licensed under GPL v2 or later."""

HELP = """PRoot: chroot, mount --bind, and binfmt_misc without privilege/setup.

\b
The command-line interface is composed of two parts: first PRoot's
options (optional), then the command to launch (/bin/sh if not
specified).
"""

__all__ = ["build_engine_plan", "proot"]


def _click_option(opt: ProotOption) -> Callable:
    """The click option of one row of the table (proot_options.py, proot_ext.py)."""
    kw: dict = {"help": opt.help, "metavar": opt.metavar, "multiple": opt.multiple}
    if opt.is_flag:
        kw.update(is_flag=True, default=None if opt.tristate else False)
    elif opt.integer:
        kw["type"] = int
    return click.option(*opt.names, opt.dest, **kw)


class OrderedCommand(click.Command):
    """A click command that remembers the order its options were given in (ctx.meta[ORDER_KEY])."""

    def make_parser(self, ctx: click.Context):  # type: ignore[override]
        parser = super().make_parser(ctx)
        parse = parser.parse_args

        def parse_args(args):
            opts, rest, order = parse(args)
            ctx.meta[ORDER_KEY] = [p.name for p in order]
            return opts, rest, order

        parser.parse_args = parse_args  # type: ignore[method-assign]
        return parser


def _apply(options: list[ProotOption], f: Callable) -> Callable:
    for opt in reversed(options):
        f = _click_option(opt)(f)
    return f


def _version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(VERSION_TEXT)
        ctx.exit(0)


def _command(f: Callable) -> Callable:
    f = click.argument("command", nargs=-1, type=click.UNPROCESSED)(f)
    f = _apply(EXTENSION_OPTIONS, f)
    f = _apply(ALIAS_OPTIONS, f)
    f = _apply(REGULAR_OPTIONS, f)
    f = click.option(
        "-V", "--version", "--about", is_flag=True, expose_value=False, is_eager=True,
        callback=_version, help="Print version, copyright, license and contact, then exit.",
    )(f)
    return click.command(
        "proot",
        cls=OrderedCommand,
        help=HELP,
        epilog=help_epilog(),
        context_settings={
            "allow_interspersed_args": False,
            "help_option_names": ["-h", "--help", "--usage"],
            "ignore_unknown_options": False,
        },
    )(f)


@_command
def proot(command: tuple[str, ...], **options) -> None:
    run_guest(options, command, click.get_current_context().meta.get(ORDER_KEY))
