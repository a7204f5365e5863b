"""The `ocirun` command line: `main`, a click group (cli/group.py) whose subcommands load lazily.

`ocirun [RUN OPTIONS] IMAGE [COMMAND...]` is short for `ocirun run ...`: when the
first word after the global options is not a subcommand, `run` is assumed (as the
issue asks, an image named like a subcommand needs `ocirun run`).

Subcommands live in their own modules and are listed in COMMANDS as
"module:attribute", so `ocirun proot /bin/true` never imports the registry code.
`ocirun proot` does not import click either when its options are all ones
cli/proot_argv.py reads (start-up time), nor does a run with the options
cli/run_argv.py reads; help, version and errors go to click.
"""

from __future__ import annotations

import os
import sys

from ocirun.errors import EXIT_OCIRUN, OcirunError

# name -> "module:attribute"; one line per subcommand.
COMMANDS: dict[str, str] = {
    "proot": "ocirun.cli.proot_cmd:proot",
    "run": "ocirun.cli.run_cmds:run",
    "create": "ocirun.cli.run_cmds:create",
    "start": "ocirun.cli.run_cmds:start",
    "exec": "ocirun.cli.run_cmds:exec_",
    "ps": "ocirun.cli.container_cmds:ps",
    "rm": "ocirun.cli.container_cmds:rm",
    "logs": "ocirun.cli.container_cmds:logs",
    "stop": "ocirun.cli.container_cmds:stop",
    "export": "ocirun.cli.container_cmds:export",
    "container": "ocirun.cli.container_cmds:container",
    "pull": "ocirun.cli.image_cmds:pull",
    "build": "ocirun.cli.build_cmd:build",
    "images": "ocirun.cli.image_cmds:images",
    "rmi": "ocirun.cli.image_cmds:rmi",
    "inspect": "ocirun.cli.image_cmds:inspect",
    "load": "ocirun.cli.image_cmds:load",
    "login": "ocirun.cli.image_cmds:login",
    "logout": "ocirun.cli.image_cmds:logout",
    "image": "ocirun.cli.image_cmds:image",
    "system": "ocirun.cli.image_cmds:system",
    "tag": "ocirun.cli.lifecycle_cmds:tag",
    "push": "ocirun.cli.lifecycle_cmds:push",
    "history": "ocirun.cli.lifecycle_cmds:history",
    "save": "ocirun.cli.lifecycle_cmds:save",
    "commit": "ocirun.cli.lifecycle_cmds:commit",
    "cp": "ocirun.cli.lifecycle_cmds:cp",
}


class GuestExit(SystemExit):
    """The guest's exit status once the run and its clean-up are over: nothing is left
    for the interpreter's teardown (module by module, ~10 ms of a start), so `main`
    ends the process at once (os._exit) after flushing the standard streams."""


class _Interrupted(BaseException):
    """Ctrl-C (SIGINT) while a command ran: `main` reports it in one line, exit 130."""


def undo_locale_coercion() -> None:
    """Give guests the caller's environment: under a C locale Python sets LC_CTYPE=C.UTF-8
    in its own (PEP 538); the value ocirun was started with (or its absence) is put back."""
    if "LC_CTYPE" not in os.environ:
        return
    try:
        with open("/proc/self/environ", "rb") as f:
            initial = f.read().split(b"\0")
    except OSError:
        return
    given = [entry[len(b"LC_CTYPE="):] for entry in initial if entry.startswith(b"LC_CTYPE=")]
    if not given:
        del os.environ["LC_CTYPE"]
    else:
        os.environb[b"LC_CTYPE"] = given[-1]


def _say(line: str) -> None:
    """The error line on stderr; if stderr cannot take it (a full disk, a closed pipe)
    the exit status still tells, and Python's own flush at exit must not replace it."""
    try:
        if "click" in sys.modules:  # (click's echo strips colour codes off a non-terminal)
            sys.modules["click"].echo(line, err=True)
        elif sys.stderr is not None:
            sys.stderr.write(line + "\n")
            sys.stderr.flush()
    except OSError:
        _silence(sys.stderr)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the group, turn every failure into one line and an exit code.

    Output still buffered when the command ends is flushed here, not by Python at exit:
    there a failure (stdout on a full disk) is a traceback-like notice and exit 120."""
    quick = False
    try:
        _main(argv)
        code: int | str | None = 0
    except SystemExit as exc:
        code = exc.code
        quick = isinstance(exc, GuestExit) and argv is None  # (not when called in a Python program)
    try:
        sys.stdout.flush()
    except OSError as exc:
        _silence(sys.stdout)
        if code in (0, None):
            _say(f"ocirun: {(exc.strerror or str(exc)).lower()}")
            code = EXIT_OCIRUN
    if quick and isinstance(code, int):
        try:
            sys.stderr.flush()
        except (OSError, AttributeError):
            pass
        os._exit(code)
    sys.exit(code)


def _silence(stream) -> None:
    """Point a standard stream that cannot be written at /dev/null (its buffer goes there)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, stream.fileno())
    os.close(devnull)


def _dispatch(args: list[str]) -> object:
    """Run the command `args` names: `ocirun proot` and a common `ocirun run` without
    click when they can, else click."""
    if args[:1] == ["proot"] and "_OCIRUN_COMPLETE" not in os.environ:
        from ocirun.cli.proot_argv import parse

        parsed = parse(args[1:])
        if parsed is not None:
            from ocirun.cli.proot_run import run_guest

            return run_guest(parsed.options, parsed.command, parsed.order)
    elif "_OCIRUN_COMPLETE" not in os.environ:
        from ocirun.cli.run_argv import parse as parse_run
        from ocirun.cli.run_argv import run_parsed

        run = parse_run(args)
        if run is not None:
            return run_parsed(run)
    from ocirun.cli.group import cli

    return cli.main(args=args, prog_name="ocirun", standalone_mode=False)


def _main(argv: list[str] | None) -> None:
    args = sys.argv[1:] if argv is None else argv
    undo_locale_coercion()
    debug = "-D" in args[:2] or "--debug" in args[:2] or os.environ.get("OCIRUN_DEBUG") == "1"
    try:
        code = _dispatch(args)
    except OcirunError as exc:
        _say(f"ocirun: {exc.message}")
        if debug and exc.detail:
            _say(exc.detail)
        sys.exit(exc.exit_code)
    except (KeyboardInterrupt, _Interrupted):
        # on a terminal the line with the echoed ^C is ended first
        _say(("\n" if sys.stderr.isatty() else "") + "ocirun: interrupted")
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(141)
    except OSError as exc:  # e.g. a shared store the user may read but not write
        what = f"{exc.filename}: " if exc.filename else ""
        reason = (exc.strerror or str(exc)).lower()
        _say(f"ocirun: {what}{reason}")
        if debug:
            import traceback

            traceback.print_exc()
        sys.exit(EXIT_OCIRUN)
    except Exception as exc:  # click's own failures, then the last line of defence: never a bare traceback
        _fail(exc, args, debug)
    sys.exit(code if isinstance(code, int) else 0)


def _fail(exc: Exception, args: list[str], debug: bool) -> None:
    """Exit for an exception no other handler took: click's (a usage error...) as click
    ran, anything else as an internal error."""
    if "click" in sys.modules:
        from ocirun.cli.group import click_failure

        code = click_failure(exc, args)
        if code is not None:
            sys.exit(code)
    _say(f"ocirun: internal error: {type(exc).__name__}: {exc}")
    if debug:
        import traceback

        traceback.print_exc()
    sys.exit(EXIT_OCIRUN)
