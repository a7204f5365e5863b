"""The `ocirun` command line: a click group whose subcommands load lazily.

`ocirun [RUN OPTIONS] IMAGE [COMMAND...]` is short for `ocirun run ...`: when the
first word after the global options is not a subcommand, `run` is assumed (as the
issue asks, an image named like a subcommand needs `ocirun run`).

Subcommands live in their own modules and are listed in COMMANDS as
"module:attribute", so `ocirun proot /bin/true` never imports the registry code.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback

import click

from ocirun import __version__
from ocirun.errors import EXIT_OCIRUN, OcirunError

# name -> "module:attribute"; one line per subcommand.
COMMANDS: dict[str, str] = {
    "proot": "ocirun.cli.proot_cmd:proot",
    "run": "ocirun.cli.run_cmds:run",
    "create": "ocirun.cli.run_cmds:create",
    "start": "ocirun.cli.run_cmds:start",
    "exec": "ocirun.cli.run_cmds:exec_",
    "ps": "ocirun.cli.run_cmds:ps",
    "rm": "ocirun.cli.run_cmds:rm",
    "logs": "ocirun.cli.run_cmds:logs",
    "stop": "ocirun.cli.run_cmds:stop",
    "export": "ocirun.cli.run_cmds:export",
    "container": "ocirun.cli.run_cmds:container",
    "pull": "ocirun.cli.image_cmds:pull",
    "images": "ocirun.cli.image_cmds:images",
    "rmi": "ocirun.cli.image_cmds:rmi",
    "inspect": "ocirun.cli.image_cmds:inspect",
    "load": "ocirun.cli.image_cmds:load",
    "login": "ocirun.cli.image_cmds:login",
    "logout": "ocirun.cli.image_cmds:logout",
    "image": "ocirun.cli.image_cmds:image",
    "system": "ocirun.cli.image_cmds:system",
}

# Global options the group itself takes before the subcommand (or image).
_GLOBAL_FLAGS = {"-D", "--debug", "--version", "-h", "--help"}
_GLOBAL_WITH_VALUE = {"--root"}


class _Interrupted(BaseException):
    """Ctrl-C (SIGINT) while a command ran: `main` reports it in one line, exit 130."""


class OcirunGroup(click.Group):
    """Lazy subcommands, and `run` as the default when no subcommand is named."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                return None  # subcommand not built yet
            raise
        return getattr(module, attr, None)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:  # not click's Abort, which first prints an empty line
            raise _Interrupted() from None

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        args = list(args)
        i = 0
        while i < len(args):
            word = args[i]
            if word in _GLOBAL_FLAGS:
                i += 1
            elif word in _GLOBAL_WITH_VALUE:
                i += 2
            elif any(word.startswith(opt + "=") for opt in _GLOBAL_WITH_VALUE):
                i += 1
            else:
                break
        if i < len(args) and args[i] not in COMMANDS:
            args.insert(i, "run")
        return super().parse_args(ctx, args)


@click.group(
    cls=OcirunGroup,
    context_settings={"help_option_names": ["-h", "--help"]},
    invoke_without_command=False,
)
@click.option(
    "--root",
    "root",
    metavar="PATH",
    envvar="OCIRUN_ROOT",
    help="Root directory of the image and container store (default: $XDG_DATA_HOME/ocirun).",
)
@click.option("-D", "--debug", is_flag=True, help="Show details (and tracebacks) of failures.")
@click.version_option(__version__, "--version", prog_name="ocirun", message="ocirun version %(version)s")
@click.pass_context
def cli(ctx: click.Context, root: str | None, debug: bool) -> None:
    """Run OCI/Docker images without root, daemon or namespaces.

    \b
    Usage:  ocirun [OPTIONS] COMMAND [ARG...]
            ocirun [RUN OPTIONS] IMAGE [COMMAND] [ARG...]   (same as 'ocirun run')
    """
    ctx.ensure_object(dict)
    ctx.obj["root"] = root
    ctx.obj["debug"] = debug
    if debug:
        os.environ["OCIRUN_DEBUG"] = "1"


# click >= 8.2 raises this (a UsageError) for a bare group; print help, exit 0.
_NoArgsIsHelp = getattr(click.exceptions, "NoArgsIsHelpError", ())


def _command_path(args: list[str]) -> str:
    for word in args:
        if word in COMMANDS:
            return f"ocirun {word}"
    return "ocirun"


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the group, turn every failure into one line and an exit code."""
    args = sys.argv[1:] if argv is None else argv
    debug = "-D" in args[:2] or "--debug" in args[:2] or os.environ.get("OCIRUN_DEBUG") == "1"
    try:
        code = cli.main(args=args, prog_name="ocirun", standalone_mode=False)
    except OcirunError as exc:
        click.echo(f"ocirun: {exc.message}", err=True)
        if debug and exc.detail:
            click.echo(exc.detail, err=True)
        sys.exit(exc.exit_code)
    except _NoArgsIsHelp as exc:
        click.echo(exc.ctx.get_help() if exc.ctx else str(exc))
        sys.exit(0)
    except click.UsageError as exc:
        hint = _command_path(args)
        click.echo(f"ocirun: {exc.format_message()} (see '{hint} --help')", err=True)
        sys.exit(EXIT_OCIRUN)
    except click.exceptions.Abort:
        click.echo("ocirun: interrupted", err=True)
        sys.exit(130)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        click.echo(f"ocirun: {exc.format_message()}", err=True)
        sys.exit(EXIT_OCIRUN)
    except (KeyboardInterrupt, _Interrupted):
        # on a terminal the line with the echoed ^C is ended first
        click.echo(("\n" if sys.stderr.isatty() else "") + "ocirun: interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(141)
    except Exception as exc:  # noqa: BLE001 - last line of defence: never a bare traceback
        click.echo(f"ocirun: internal error: {type(exc).__name__}: {exc}", err=True)
        if debug:
            traceback.print_exc()
        sys.exit(EXIT_OCIRUN)
    sys.exit(code if isinstance(code, int) else 0)
