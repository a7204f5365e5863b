"""Here-documents in RUN, COPY and ADD (`RUN <<EOF`, `COPY <<EOF /path`), as BuildKit.

The lines after an instruction that names `<<NAME` (or `<<-NAME`: leading tabs
stripped; `<<"NAME"`/`<<'NAME'`: no variable expansion) up to a line that is
NAME are its body, taken as written (comments and escapes included); several
heredocs on one line take their bodies in order.

RUN: a command that is one heredoc alone runs the body as a shell script, or,
when the body starts with `#!`, as a program of its own (BuildKit's
/dev/pipes/NAME); otherwise the shell gets the line with the bodies after it and
does the redirection itself. COPY/ADD: each `<<NAME` source is a file NAME
holding the body, expanded with the build's variables unless the name was quoted.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

HEREDOC_INSTRUCTIONS = frozenset({"RUN", "COPY", "ADD"})
_MARKER = re.compile(r"(?<![<\w])<<(-?)([\"']?)([A-Za-z0-9_.-]+)\2(?!<)")
_VAR = re.compile(r"\\\$|\$\{[^}]*\}|\$[A-Za-z_][A-Za-z0-9_]*")
PIPES = "/dev/pipes"


@dataclass
class Heredoc:
    name: str
    body: str  # as written, each line ending in a newline (tabs stripped for <<-)
    expand: bool  # the name was not quoted
    chomp: bool  # <<-
    raw: str  # the body as written (tabs kept): what the shell is given


def markers(text: str) -> list[re.Match[str]]:
    """The `<<NAME` markers of an instruction line (not `<<<`, not in an exec form's JSON)."""
    words = text.split()[1:]
    while words and words[0].startswith("--"):
        words.pop(0)
    if words and words[0].startswith("["):
        return []
    return list(_MARKER.finditer(text))


def read_bodies(text: str, lines: list[str], idx: int) -> tuple[list[Heredoc], int]:
    """The bodies of the line's heredocs, from `lines[idx]` on; (heredocs, next index)."""
    out = []
    for m in markers(text):
        chomp, quote, name = m.group(1) == "-", m.group(2), m.group(3)
        body, raw = [], []
        while idx < len(lines):
            line = lines[idx].rstrip("\r\n")
            idx += 1
            if (line.lstrip("\t") if chomp else line) == name:
                break
            raw.append(line + "\n")
            body.append((line.lstrip("\t") if chomp else line) + "\n")
        else:
            raise ValueError(f"unterminated heredoc <<{name}")
        out.append(Heredoc(name, "".join(body), not quote, chomp, "".join(raw)))
    return out, idx


def is_marker(word: str) -> str | None:
    """The heredoc name if `word` is exactly a marker (`<<EOF`, `<<-"EOF"`), else None."""
    m = _MARKER.fullmatch(word)
    return m.group(3) if m else None


def expand_body(body: str, lookup: Callable[[str], str]) -> str:
    """`$VAR`, `${VAR}` and `${VAR:-x}`-style forms replaced; quotes and backslashes kept."""
    return _VAR.sub(lambda m: "$" if m.group() == "\\$" else lookup(m.group()), body)


def run_argv(rest: str, docs: list[Heredoc], shell: list[str]) -> tuple[list[str], Heredoc | None]:
    """RUN's argv for a command with heredocs, and the heredoc to provide as a program file."""
    if len(docs) == 1 and is_marker(rest.strip()) == docs[0].name:
        doc = docs[0]
        if doc.body.startswith("#!"):
            return [f"{PIPES}/{doc.name}"], doc
        return [*shell, doc.body], None
    full = rest + "".join(f"\n{d.raw}{d.name}" for d in docs)
    return [*shell, full], None
