"""ocirun's click group: docker's help layout, the lazy subcommands, `run` as the
default subcommand, and click's own failures as ocirun's one line.

`ocirun proot` with options it can read runs without this module (ocirun/cli/__init__.py,
proot_argv.py): click is imported only for the other commands, help and errors.
"""

from __future__ import annotations

import os

import click

from ocirun import __version__
from ocirun.cli import COMMANDS, _Interrupted, _say
from ocirun.errors import EXIT_OCIRUN
from ocirun.util.imports import import_module

# Global options the group itself takes before the subcommand (or image).
_GLOBAL_FLAGS = {"-D", "--debug", "--version", "-h", "--help"}
_GLOBAL_WITH_VALUE = {"--root"}


# --- help as docker prints it --------------------------------------------------------------
# "Usage:  ocirun CMD ...", one line of description, options (grouped where a command says
# so) with docker's column layout, and for groups the commands by kind.

_TOP_GROUPS: list[tuple[str, list[str]]] = [
    ("Common Commands", ["run", "exec", "ps", "build", "pull", "push", "images", "login", "logout"]),
    ("Management Commands", ["container", "image", "system"]),
    ("Commands", ["create", "start", "stop", "rm", "logs", "export", "rmi", "inspect", "load", "proot"]),
]


def _doc_parts(text: str) -> tuple[list[str], list[str]]:
    """A docstring's `Usage:` lines (docker's usage, written by hand) and the rest."""
    usage: list[str] = []
    rest: list[str] = []
    lines = [ln.rstrip() for ln in text.splitlines() if ln.strip() != "\b"]
    i = 0
    while i < len(lines):
        if lines[i].strip().startswith("Usage:"):
            usage.append(lines[i].strip().removeprefix("Usage:").strip())
            i += 1
            while i < len(lines) and lines[i].strip():
                usage.append(lines[i].strip())
                i += 1
            continue
        rest.append(lines[i].strip())
        i += 1
    while rest and not rest[-1]:
        rest.pop()
    while rest and not rest[0]:
        rest.pop(0)
    return usage, rest


def _option_row(ctx: click.Context, param: click.Parameter) -> tuple[str, str] | None:
    record = param.get_help_record(ctx)
    if record is None:
        return None
    names, text = record
    text = text.rstrip(".")  # docker's option descriptions end without a period
    if not names.startswith("--"):  # docker: "-d, --detach", "    --rm"
        return "  " + names, text
    return "      " + names, text


def _rows(formatter: click.HelpFormatter, title: str, rows: list[tuple[str, str]], width: int = 0) -> None:
    if not rows:
        return
    formatter.write(f"\n{title}:\n")
    width = width or min(max(len(a) for a, _ in rows) + 3, 36)
    for left, text in rows:
        if len(left) + 1 > width:
            formatter.write(left + "\n" + " " * width + text + "\n")
        else:
            formatter.write(left.ljust(width) + text + "\n")


def docker_help(cmd: click.Command, ctx: click.Context) -> str:
    """The whole help text of `cmd`, in docker's layout."""
    usage, rest = _doc_parts(cmd.help or "")
    if not usage:
        pieces = " ".join(cmd.collect_usage_pieces(ctx))
        usage = [f"{ctx.command_path} {pieces}".strip()]
    doc_path, alias = _path_words(usage[0]), ""
    if doc_path != ctx.command_path and ctx.parent is not None:  # `container ls` documented as `ps`
        usage[0] = ctx.command_path + usage[0][len(doc_path):]
        alias = doc_path
    f = click.HelpFormatter(max_width=120)
    f.write(f"\nUsage:  {usage[0]}\n")
    for more in usage[1:]:
        f.write(f"        {more}\n")
    if rest:
        f.write("\n" + "\n".join(rest) + "\n")
    if alias:
        f.write(f"\nAliases:\n  {ctx.command_path}, {alias}\n")
    if isinstance(cmd, click.Group):
        _group_commands(cmd, ctx, f)
    groups: list[tuple[str, list[str]]] = getattr(cmd, "option_groups", None) or []
    rows = {p.name: _option_row(ctx, p) for p in cmd.get_params(ctx) if isinstance(p, click.Option)}
    placed: set[str | None] = set()
    width = min(max((len(r[0]) for r in rows.values() if r), default=0) + 3, 36)
    for title, names in groups:
        _rows(f, title, [rows[n] for n in names if rows.get(n)], width)
        placed.update(names)
    title = "Global Options" if ctx.parent is None and isinstance(cmd, click.Group) else "Options"
    _rows(f, title, [r for n, r in rows.items() if r and n not in placed], width)
    if isinstance(cmd, click.Group):
        f.write(f"\nRun '{ctx.command_path} COMMAND --help' for more information on a command.\n")
    return f.getvalue()


def _path_words(usage: str) -> str:
    """'ocirun ps [OPTIONS]' -> 'ocirun ps': the command path a usage line starts with."""
    words = []
    for w in usage.split():
        if not w.islower() or not w.replace("-", "").isalpha():
            break
        words.append(w)
    return " ".join(words)


def _summary(cmd: click.Command) -> str:
    _usage, rest = _doc_parts(cmd.help or "")
    return rest[0].rstrip(".") if rest else ""


def _group_commands(group: click.Group, ctx: click.Context, f: click.HelpFormatter) -> None:
    names = group.list_commands(ctx)
    kinds = [("Commands", names)]
    if ctx.parent is None:  # the top level: by kind, anything unlisted under "Commands"
        listed = {n for _t, members in _TOP_GROUPS for n in members}
        kinds = [(t, m + [n for n in names if n not in listed] if t == "Commands" else m) for t, m in _TOP_GROUPS]
    width = max(len(n) for n in names) + 5
    for title, members in kinds:
        rows = []
        for name in members:
            sub = group.get_command(ctx, name) if name in names else None
            if sub is not None and not getattr(sub, "hidden", False):
                rows.append(("  " + name, _summary(sub)))
        _rows(f, title, rows, width)


class DockerCommand(click.Command):
    """A command whose --help reads like docker's (see docker_help); `option_groups`
    lists (title, [param names]) to group options."""

    option_groups: list[tuple[str, list[str]]] = []

    def get_help(self, ctx: click.Context) -> str:
        return docker_help(self, ctx)

    def get_short_help_str(self, limit: int = 45) -> str:
        return _summary(self)


class DockerGroup(click.Group):
    """A command group (container, image, system) with docker's help layout."""

    def get_help(self, ctx: click.Context) -> str:
        return docker_help(self, ctx)


class OcirunGroup(click.Group):
    """Lazy subcommands, and `run` as the default when no subcommand is named."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        return getattr(import_module(module_name), attr)

    def get_help(self, ctx: click.Context) -> str:
        return docker_help(self, ctx)

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
    help="Root directory of the image and container store "
    "(default: $OCIRUN_ROOT, else $XDG_DATA_HOME/ocirun).",
)
@click.option("-D", "--debug", is_flag=True, help="Show details (and tracebacks) of failures.")
@click.version_option(__version__, "--version", prog_name="ocirun", message="ocirun version %(version)s")
@click.pass_context
def cli(ctx: click.Context, root: str | None, debug: bool) -> None:
    """Run OCI/Docker images without root, daemon or namespaces.

    \b
    Usage:  ocirun [OPTIONS] COMMAND [ARG...]
            ocirun [OPTIONS] [RUN OPTIONS] IMAGE [COMMAND] [ARG...]   (same as 'ocirun run')
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


def click_failure(exc: Exception, args: list[str]) -> int | None:
    """The exit status for one of click's exceptions (its line said), None for any other."""
    if _NoArgsIsHelp and isinstance(exc, _NoArgsIsHelp):
        click.echo(exc.ctx.get_help() if exc.ctx else str(exc))
        return 0
    if isinstance(exc, click.UsageError):
        _say(f"ocirun: {exc.format_message()} (see '{_command_path(args)} --help')")
        return EXIT_OCIRUN
    if isinstance(exc, click.exceptions.Abort):
        _say("ocirun: interrupted")
        return 130
    if isinstance(exc, click.exceptions.Exit):
        return exc.exit_code
    if isinstance(exc, click.ClickException):
        _say(f"ocirun: {exc.format_message()}")
        return EXIT_OCIRUN
    return None
