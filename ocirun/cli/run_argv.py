"""`ocirun [--root PATH] [-D] [run] [OPTIONS] IMAGE [COMMAND...]` read without click.

Importing click (with the typing and inspect it imports) is ~20 ms of a `run --rm` of a
cached image. `parse` reads the group's --root and -D, `run` or an image in its place
(as cli/group.py does), then the run options in RUN_OPTIONS with proot_argv's reader
(clusters such as -it, `--opt=value`, `--`), up to the image. Anything else (help, a
flag ocirun ignores, an option not in the table, another command, a missing value or
image) is None: the caller runs click, which reads the same words. `run_container` is
the run itself, whichever read the command line.
"""

from __future__ import annotations

import os
import sys

from ocirun.cli import COMMANDS, GuestExit
from ocirun.cli.proot_argv import read
from ocirun.cli.proot_options import ProotOption
from ocirun.util.records import dataclass

TYPE_CHECKING = False  # typing's, without importing typing (start-up time)
if TYPE_CHECKING:
    from ocirun.run.options import RawRunArgs

# The options of `ocirun run` read here, under click's names and dests (run_cmds.py has
# their help; tests/runner/test_run_argv.py checks both agree).
RUN_OPTIONS: tuple[ProotOption, ...] = (
    ProotOption(("-d", "--detach"), "detach", ""),
    ProotOption(("--rm",), "rm", ""),
    ProotOption(("-i", "--interactive"), "interactive", ""),
    ProotOption(("-t", "--tty"), "tty", ""),
    ProotOption(("-e", "--env"), "env", "", "list", multiple=True),
    ProotOption(("--env-file",), "env_file", "", "list", multiple=True),
    ProotOption(("-v", "--volume"), "volume", "", "list", multiple=True),
    ProotOption(("--mount",), "mount", "", "mount", multiple=True),
    ProotOption(("-p", "--publish"), "publish", "", "list", multiple=True),
    ProotOption(("-w", "--workdir"), "workdir", "", "string"),
    ProotOption(("-u", "--user"), "user", "", "string"),
    ProotOption(("--name",), "name", "", "string"),
    ProotOption(("--entrypoint",), "entrypoint", "", "string"),
    ProotOption(("--hostname",), "hostname", "", "string"),
    ProotOption(("--platform",), "platform", "", "string"),
    ProotOption(("--pull",), "pull", "", "string"),
)


@dataclass
class ParsedRun:
    """What the group and click's `run` would have given: the store's --root, -D, and
    the options given (not the defaults: RawRunArgs has them)."""

    root: str | None
    debug: bool
    options: dict
    image: str
    command: tuple[str, ...]


def _globals(args: list[str]) -> tuple[str | None, bool, int] | None:
    """--root and -D before the command: (root, debug, index of the next word)."""
    root, debug, i = None, False, 0
    while i < len(args):
        word = args[i]
        if word in ("-D", "--debug"):
            debug, i = True, i + 1
        elif word == "--root" and i + 1 < len(args):
            root, i = args[i + 1], i + 2
        elif word.startswith("--root="):
            root, i = word[len("--root="):], i + 1
        elif word.startswith("-"):
            return None  # --version, --help, or click's error
        else:
            return root, debug, i
    return None


def parse(args: list[str]) -> ParsedRun | None:
    """`ocirun ARGS` when it is a run that needs no click, else None."""
    found = _globals(args)
    if found is None:
        return None
    root, debug, i = found
    if args[i] == "run":
        i += 1
    elif args[i] in COMMANDS:
        return None
    parsed = read(args[i:], RUN_OPTIONS)
    if parsed is None or not parsed.command or parsed.command[0].startswith("-"):
        return None
    given = {dest: parsed.options[dest] for dest in parsed.order if dest != "command"}
    return ParsedRun(root, debug, given, parsed.command[0], parsed.command[1:])


def run_parsed(parsed: ParsedRun) -> int:
    """Run what `parse` read, as the group and click's `run` would."""
    from ocirun.run.options import RawRunArgs

    if parsed.debug:
        os.environ["OCIRUN_DEBUG"] = "1"
    raw = RawRunArgs(image=parsed.image, command=parsed.command, **parsed.options)
    return run_container(raw, parsed.root)


def run_container(raw: RawRunArgs, root: str | None) -> int:
    """Create the container and run it in the foreground (exit: GuestExit), or start it
    detached and print its id."""
    from ocirun.run.containers import open_stores
    from ocirun.run.options import build_options
    from ocirun.run.runner import create_container, start_container, start_detached

    opts = build_options(raw)
    store, cstore = open_stores(root)
    c = create_container(store, cstore, opts, hold=not raw.detach)
    if raw.detach:
        start_detached(cstore, c)
        sys.stdout.write(c.id + "\n")
        return 0
    raise GuestExit(start_container(cstore, c))  # its clean-up done: no teardown needed (cli.GuestExit)
