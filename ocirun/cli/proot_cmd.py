"""`ocirun proot [OPTIONS] [COMMAND...]`: PRoot's command line on ocirun's engine.

Options are PRoot's (see its manual): the regular ones here, the extension
options (-0, -i, -k, -p, -n, -l, -q) in ocirun/cli/proot_ext.py, with the plan
hooks that turn them into engine extensions. Everything
after the first non-option word is the guest command (`ocirun proot -r R ls -l`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

import click

from ocirun import __version__
from ocirun.cli.proot_ext import OPTIONS as EXTENSION_OPTIONS
from ocirun.cli.proot_ext import PLAN_HOOKS
from ocirun.cli.proot_rules import (
    ORDER_KEY,
    OrderedCommand,
    apply_tmp_dir,
    default_order,
    env_flag,
    help_epilog,
    proot_verbose,
    resolve_identity,
    root_and_bindings,
    starting_directory,
)
from ocirun.errors import EXIT_OCIRUN

VERSION_TEXT = f"""ocirun proot {__version__}: PRoot's interface on ocirun's ptrace engine.
A user-space implementation of chroot, mount --bind and binfmt_misc, re-imagined in Python.
Licensed under GPL v2 or later."""

HELP = """PRoot: chroot, mount --bind, and binfmt_misc without privilege/setup.

\b
The command-line interface is composed of two parts: first PRoot's
options (optional), then the command to launch (/bin/sh if not
specified).
"""

# Regular options, as PRoot's manual describes them.
REGULAR_OPTIONS: list[Callable] = [
    click.option(
        "-r", "--rootfs", "rootfs", metavar="path", default=None,
        help="Use *path* as the new guest root file-system, default is /.",
    ),
    click.option(
        "-b", "-m", "--bind", "--mount", "binds", metavar="path", multiple=True,
        help="Make the content of *path* accessible in the guest rootfs "
        "(host_path[:guest_location], a trailing ! does not dereference the guest location).",
    ),
    click.option(
        "-w", "--pwd", "--cwd", "cwd", metavar="path", default=None,
        help="Set the initial working directory to *path*.",
    ),
    click.option(
        "-v", "--verbose", "verbose", metavar="value", type=int, default=None,
        help="Set the level of debug information to *value* (negative: quiet; 2 and more trace syscalls).",
    ),
    click.option(
        "--kill-on-exit", "kill_on_exit", is_flag=True,
        help="Kill all processes on command exit.",
    ),
]

# Alias options.
ALIAS_OPTIONS: list[Callable] = [
    click.option(
        "-R", "alias_r", metavar="path", default=None,
        help="Alias: -r *path* + a couple of recommended -b.",
    ),
    click.option(
        "-S", "alias_s", metavar="path", default=None,
        help="Alias: -0 -r *path* + a couple of recommended -b.",
    ),
]

def _apply(options: list[Callable], f: Callable) -> Callable:
    for opt in reversed(options):
        f = opt(f)
    return f


def _version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(VERSION_TEXT)
        ctx.exit(0)


def build_engine_plan(options: dict, command: tuple[str, ...], order: list[str] | None = None):
    """EnginePlan from PRoot's options (no tracing here); `order`: the options as given (OrderedCommand)."""
    from ocirun.engine.plan import EnginePlan

    order = default_order(options) if order is None else order
    rootfs, bindings = root_and_bindings(options, order)
    verbose = proot_verbose(options.get("verbose"))
    resolve_identity(options, order, quiet=verbose < 0)
    cwd = starting_directory(rootfs, bindings, options.get("cwd"), quiet=verbose < 0)
    env = dict(os.environ)
    env["PWD"] = cwd
    plan = EnginePlan(
        argv=list(command) or ["/bin/sh"],
        rootfs=rootfs,
        bindings=bindings,
        cwd=cwd,
        env=env,
        verbose=verbose,
        kill_on_exit=bool(options.get("kill_on_exit")),
        seccomp=not env_flag("PROOT_NO_SECCOMP"),
    )
    for hook in PLAN_HOOKS:
        hook(plan, options)
    return plan


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
    from ocirun.engine import run

    apply_tmp_dir()
    plan = build_engine_plan(options, command, click.get_current_context().meta.get(ORDER_KEY))
    code = run(plan)
    sys.stdout.flush()
    sys.exit(code if 0 <= code <= 255 else EXIT_OCIRUN)
