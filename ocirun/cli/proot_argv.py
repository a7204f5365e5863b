"""`ocirun proot`'s command line read without click, for start-up time.

Importing click and building the command is most of what `ocirun proot` spends
before the guest starts. `parse` follows click's parser exactly for what it
accepts (the options of proot_options.py and proot_ext.py, clusters such as
`-0b/x`, `--opt=value`, `--`, options ending at the first other word) and gives
up (None) on anything else: an unknown option, a missing value, a bad number,
a help or version option. The caller then runs click, which parses the same
words and prints what it always prints.
"""

from __future__ import annotations

from ocirun.cli.proot_ext import OPTIONS as EXTENSION_OPTIONS
from ocirun.cli.proot_options import ALIAS_OPTIONS, REGULAR_OPTIONS, ProotOption
from ocirun.util.records import dataclass


@dataclass
class ParsedProot:
    """What click would have given the command: the values, the options in the order
    given (one entry per occurrence, then "command"), and the guest command."""

    options: dict
    order: list[str]
    command: tuple[str, ...]


class _GiveUp(Exception):
    """A command line only click may answer (its errors, help and version)."""


def _store(opt: ProotOption, value: str | None, parsed: ParsedProot) -> None:
    if opt.is_flag:
        if value is not None:
            raise _GiveUp  # click: "Option '--x' does not take a value."
        parsed.options[opt.dest] = True
    elif opt.integer:
        try:
            number = int(value)  # click's INT type is int() too
        except (TypeError, ValueError):
            raise _GiveUp from None
        parsed.options[opt.dest] = number
    elif opt.multiple:
        parsed.options[opt.dest] += (value,)
    else:
        parsed.options[opt.dest] = value
    parsed.order.append(opt.dest)


def _long(word: str, rest: list[str], table: dict[str, ProotOption], parsed: ParsedProot) -> None:
    name, eq, explicit = word.partition("=")
    opt = table.get(name)
    if opt is None:
        raise _GiveUp
    value: str | None = explicit if eq else None
    if value is None and not opt.is_flag:
        if not rest:
            raise _GiveUp
        value = rest.pop(0)
    _store(opt, value, parsed)


def _short(word: str, rest: list[str], table: dict[str, ProotOption], parsed: ParsedProot) -> None:
    """A cluster such as -0b/x: flags, then at most one option taking the rest as its value."""
    for i, letter in enumerate(word[1:], start=2):
        opt = table.get("-" + letter)
        if opt is None:
            raise _GiveUp
        if opt.is_flag:
            _store(opt, None, parsed)
            continue
        value = word[i:]
        if not value:
            if not rest:
                raise _GiveUp
            value = rest.pop(0)
        _store(opt, value, parsed)
        return


def parse(args: list[str]) -> ParsedProot | None:
    """`ocirun proot ARGS` read as click reads it, or None to let click answer."""
    return read(args, (*REGULAR_OPTIONS, *ALIAS_OPTIONS, *EXTENSION_OPTIONS))


def read(args: list[str], options: tuple[ProotOption, ...]) -> ParsedProot | None:
    """ARGS read as click reads a command with these options and no interspersed
    arguments (`ocirun run` reads its common options with it too), or None."""
    table = {name: opt for opt in options for name in opt.names}
    parsed = ParsedProot({opt.dest: opt.empty() for opt in table.values()}, [], ())
    rest = list(args)
    try:
        while rest:
            word = rest[0]
            if word == "--":
                rest.pop(0)
                break
            if len(word) < 2 or not word.startswith("-"):
                break  # the command starts (options end at the first word that is none)
            rest.pop(0)
            if word.startswith("--"):
                _long(word, rest, table, parsed)
            else:
                _short(word, rest, table, parsed)
    except _GiveUp:
        return None
    parsed.command = tuple(rest)
    parsed.order.append("command")
    return parsed
