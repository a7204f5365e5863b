"""Dockerfile syntax: lines -> instructions, and docker's variable expansion.

Follows docker's parser (moby/buildkit frontend/dockerfile/parser): parser
directives (`# escape=`) only at the top, comment lines dropped (also inside a
continued instruction), the escape character at the end of a line continues
it, instruction names are case-insensitive, `--flag=value` options come first,
a JSON array is the exec form. Expansion (`$V`, `${V}`, `${V:-word}`,
`${V:+word}`, `${V-word}`, `${V+word}`, `${V:?msg}`) is applied by the builder to the
instructions docker expands, with the ARG and ENV values of the moment.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from ocirun.build.heredoc import HEREDOC_INSTRUCTIONS, Heredoc, read_bodies
from ocirun.errors import OcirunError

# instruction -> (min args, max args or None); tables as data.
ARITY: dict[str, tuple[int, int | None]] = {
    "FROM": (1, 3), "RUN": (1, None), "CMD": (0, None), "ENTRYPOINT": (0, None),
    "COPY": (2, None), "ADD": (2, None), "ENV": (1, None), "ARG": (1, None),
    "WORKDIR": (1, None), "USER": (1, 1), "EXPOSE": (1, None), "LABEL": (1, None),
    "VOLUME": (1, None), "STOPSIGNAL": (1, 1), "SHELL": (1, None), "HEALTHCHECK": (1, None),
    "ONBUILD": (1, None), "MAINTAINER": (1, None),
}
# flags each instruction accepts (others are errors, as docker's)
FLAGS: dict[str, frozenset[str]] = {
    "FROM": frozenset({"platform"}),
    "COPY": frozenset({"from", "chown", "chmod", "link", "parents", "exclude"}),
    "ADD": frozenset({"chown", "chmod", "link", "checksum", "keep-git-dir", "exclude"}),
    "RUN": frozenset({"network", "security", "mount"}),
    "HEALTHCHECK": frozenset({"interval", "timeout", "start-period", "start-interval", "retries"}),
}
JSON_FORM = frozenset({"RUN", "CMD", "ENTRYPOINT", "SHELL", "COPY", "ADD", "VOLUME"})
# instructions whose arguments docker expands with ARG/ENV values
EXPANDED = frozenset({"ADD", "COPY", "ENV", "EXPOSE", "FROM", "LABEL", "STOPSIGNAL", "USER",
                      "VOLUME", "WORKDIR", "ARG"})
_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9_-]*)\s*=\s*(.*?)\s*$")
_FLAG = re.compile(r"^--([a-z][a-z0-9-]*)(?:=(.*))?$", re.S)


class DockerfileError(OcirunError):
    """A syntax error: names the file, the line and the instruction."""


@dataclass
class Instruction:
    """One instruction as written (arguments not yet expanded)."""

    cmd: str  # upper case
    rest: str  # the arguments after flags, as one string (continuations joined)
    line: int  # where it starts (1-based)
    original: str  # the instruction as written, continuations joined
    flags: dict[str, str] = field(default_factory=dict)
    json_args: list[str] | None = None  # exec form
    mount_specs: list[str] = field(default_factory=list)  # RUN --mount=... (repeatable)
    heredocs: list[Heredoc] = field(default_factory=list)  # bodies of `<<NAME` (ocirun.build.heredoc)

    @property
    def mounts(self) -> list[dict[str, str]]:
        """RUN --mount options as key -> value (a bare key, e.g. `readonly`, is "true")."""
        out = []
        for spec in self.mount_specs:
            opts: dict[str, str] = {}
            for part in spec.split(","):
                k, eq, v = part.partition("=")
                opts[k.strip().lower()] = v.strip() if eq else "true"
            out.append(opts)
        return out

    def where(self, path: str) -> str:
        return f"{path}:{self.line}: {self.cmd}"


@dataclass
class Dockerfile:
    path: str
    instructions: list[Instruction]
    escape: str = "\\"


def _directives(lines: list[str]) -> tuple[str, int]:
    """The escape character and the index of the first line after the directives."""
    escape = "\\"
    i = 0
    seen: set[str] = set()
    while i < len(lines):
        m = _DIRECTIVE.match(lines[i].strip())
        if not m:
            break
        name, value = m.group(1).lower(), m.group(2)
        if name in seen:
            break
        seen.add(name)
        if name == "escape":
            if value not in ("\\", "`"):
                raise DockerfileError(f"invalid escape token {value!r}: must be ` or \\")
            escape = value
        i += 1
    return escape, i


def _continues(line: str, escape: str) -> tuple[bool, str]:
    stripped = line.rstrip()
    if stripped.endswith(escape):
        return True, stripped[: -len(escape)]
    return False, line


def _logical_lines(lines: list[str], start: int, escape: str, path: str) -> list[tuple[int, str, list[Heredoc]]]:
    """(first line number, text, heredocs) of each instruction: comments dropped,
    continuations joined, the bodies of RUN/COPY/ADD heredocs taken as written."""
    out: list[tuple[int, str, list[Heredoc]]] = []
    current: list[str] = []
    first = 0
    idx = start
    while idx < len(lines):
        raw = lines[idx].rstrip("\r\n")
        idx += 1
        if raw.lstrip().startswith("#"):
            continue
        if not current and not raw.strip():
            continue
        if not current:
            first = idx
        more, text = _continues(raw, escape)
        current.append(text.lstrip() if len(current) else text)
        if not more:
            joined = "".join(current).strip()
            docs: list[Heredoc] = []
            if joined.split(None, 1)[0].upper() in HEREDOC_INSTRUCTIONS:
                try:
                    docs, idx = read_bodies(joined, lines, idx)
                except ValueError as exc:
                    raise DockerfileError(f"{path}:{first}: {exc}") from None
            out.append((first, joined, docs))
            current = []
    if current and "".join(current).strip():
        out.append((first, "".join(current).strip(), []))
    return out


def _split_flags(cmd: str, rest: str, where: str) -> tuple[dict[str, str], list[str], str]:
    """(--flags, the --mount values in order, what follows them)."""
    flags: dict[str, str] = {}
    mounts: list[str] = []
    while rest.startswith("--"):
        word, _, remainder = rest.partition(" ")
        m = _FLAG.match(word)
        if not m:
            break
        name = m.group(1)
        if name not in FLAGS.get(cmd, frozenset()):
            raise DockerfileError(f"{where}: unknown flag: --{name}")
        value = m.group(2) if m.group(2) is not None else "true"
        if name == "mount":
            mounts.append(value)
        flags[name] = value
        rest = remainder.lstrip()
    return flags, mounts, rest


def _json_form(rest: str) -> list[str] | None:
    if not rest.startswith("["):
        return None
    try:
        value = json.loads(rest)
    except ValueError:
        return None  # docker falls back to the shell form
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    return None


def parse_instruction(path: str, line: int, text: str) -> Instruction:
    """One instruction's text (an ONBUILD trigger, or a logical line of the file)."""
    return _instruction(path, line, text)


def _instruction(path: str, line: int, text: str) -> Instruction:
    word, *more = text.split(None, 1)
    cmd, rest = word.upper(), (more[0].strip() if more else "")
    where = f"{path}:{line}: {cmd}"
    if cmd not in ARITY:
        raise DockerfileError(f"{path}:{line}: unknown instruction: {word.strip()}")
    flags, mounts, rest = _split_flags(cmd, rest, where)
    inst = Instruction(cmd, rest, line, text, flags, mount_specs=mounts)
    if cmd in JSON_FORM:
        inst.json_args = _json_form(rest)
    _check_arity(inst, where)
    return inst


def _check_arity(inst: Instruction, where: str) -> None:
    lo, hi = ARITY[inst.cmd]
    n = len(inst.json_args) if inst.json_args is not None else len(inst.rest.split())
    if inst.cmd in ("CMD", "ENTRYPOINT") or (inst.cmd in ("ENV", "LABEL") and n):
        return
    if n < lo:
        need = "an argument" if lo == 1 else f"at least {lo} arguments"
        raise DockerfileError(f"{where} requires {need}")
    if hi is not None and n > hi:
        raise DockerfileError(f"{where} takes at most {hi} argument{'s' if hi > 1 else ''}")
    if inst.cmd == "FROM" and n in (2, 3) and (n == 2 or inst.rest.split()[1].upper() != "AS"):
        raise DockerfileError(f"{where}: expected 'FROM image [AS name]'")


def parse(text: str, path: str = "Dockerfile") -> Dockerfile:
    """Parse a Dockerfile's text; DockerfileError names the file and line."""
    lines = text.splitlines()
    escape, start = _directives(lines)
    instructions = []
    for line, text, docs in _logical_lines(lines, start, escape, path):
        inst = _instruction(path, line, text)
        inst.heredocs = docs
        instructions.append(inst)
    if not instructions:
        raise DockerfileError(f"{path}: the file has no instructions")
    first = next((i for i in instructions if i.cmd not in ("ARG",)), None)
    if first is None or first.cmd != "FROM":
        bad = first or instructions[0]
        raise DockerfileError(f"{path}:{bad.line}: {bad.cmd}: no FROM before it (only ARG may come first)")
    return Dockerfile(path, instructions, escape)


# --- expansion and word splitting ---------------------------------------------------

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class _Lexer:
    """Docker's shell-word processing: quotes, escapes and $ expansion (no globbing)."""

    def __init__(self, text: str, lookup: Callable[[str], str | None], escape: str):
        self.s, self.i, self.lookup, self.escape = text, 0, lookup, escape

    def words(self, split: bool) -> list[str]:
        words: list[str] = []
        cur: list[str] = []
        have = False
        while self.i < len(self.s):
            ch = self.s[self.i]
            if split and ch in " \t\n":
                if have:
                    words.append("".join(cur))
                cur, have = [], False
                self.i += 1
                continue
            have = True
            if ch == self.escape:
                self.i += 1
                if self.i < len(self.s):
                    cur.append(self.s[self.i])
                    self.i += 1
                else:
                    cur.append(ch)
            elif ch == "'":
                cur.append(self._until("'"))
            elif ch == '"':
                cur.append(self._double())
            elif ch == "$":
                cur.append(self._dollar())
            else:
                cur.append(ch)
                self.i += 1
        if have:
            words.append("".join(cur))
        return words

    def _until(self, quote: str) -> str:
        end = self.s.find(quote, self.i + 1)
        if end < 0:
            raise OcirunError(f"unexpected end of statement while looking for matching {quote}")
        out = self.s[self.i + 1 : end]
        self.i = end + 1
        return out

    def _double(self) -> str:
        self.i += 1
        out = []
        while self.i < len(self.s):
            ch = self.s[self.i]
            if ch == '"':
                self.i += 1
                return "".join(out)
            if ch == self.escape and self.i + 1 < len(self.s) and self.s[self.i + 1] in '"$' + self.escape:
                out.append(self.s[self.i + 1])
                self.i += 2
            elif ch == "$":
                out.append(self._dollar())
            else:
                out.append(ch)
                self.i += 1
        raise OcirunError('unexpected end of statement while looking for matching "')

    def _dollar(self) -> str:
        self.i += 1
        if self.i < len(self.s) and self.s[self.i] == "{":
            end = self._closing_brace()
            body = self.s[self.i + 1 : end]
            self.i = end + 1
            return self._braced(body)
        m = _NAME.match(self.s, self.i)
        if not m:
            return "$"
        self.i = m.end()
        return self.lookup(m.group()) or ""

    def _closing_brace(self) -> int:
        depth, j = 0, self.i
        while j < len(self.s):
            if self.s[j] == "{":
                depth += 1
            elif self.s[j] == "}":
                depth -= 1
                if depth == 0:
                    return j
            j += 1
        raise OcirunError("missing '}' in a ${...} expansion")

    def _braced(self, body: str) -> str:
        m = _NAME.match(body)
        if not m:
            raise OcirunError(f"bad substitution: ${{{body}}}")
        name, op = m.group(), body[m.end() :]
        value = self.lookup(name)
        if not op:
            return value or ""
        for prefix in (":-", ":+", ":?", "-", "+"):
            if op.startswith(prefix):
                word = _Lexer(op[len(prefix) :], self.lookup, self.escape).words(split=False)
                word_s = word[0] if word else ""
                return _apply(prefix, name, value, word_s)
        raise OcirunError(f"unsupported modifier ({op[:2]}) in substitution ${{{body}}}")


def _apply(op: str, name: str, value: str | None, word: str) -> str:
    unset_or_empty = not value
    if op == ":-":
        return word if unset_or_empty else value  # type: ignore[return-value]
    if op == "-":
        return word if value is None else value
    if op == ":+":
        return "" if unset_or_empty else word
    if op == "+":
        return "" if value is None else word
    if unset_or_empty:  # ":?"
        raise OcirunError(f"{name}: {word or 'is not allowed to be empty'}")
    return value  # type: ignore[return-value]


def expand(text: str, env: dict[str, str], escape: str = "\\") -> str:
    """`text` with $VAR and ${VAR...} replaced; quotes and escapes processed (one word)."""
    words = _Lexer(text, env.get, escape).words(split=False)
    return words[0] if words else ""


def expand_words(text: str, env: dict[str, str], escape: str = "\\") -> list[str]:
    """`text` split into words as docker does for COPY, EXPOSE, VOLUME..., each expanded."""
    return _Lexer(text, env.get, escape).words(split=True)


def key_values(inst: Instruction, env: dict[str, str], escape: str, path: str) -> list[tuple[str, str]]:
    """ENV and LABEL pairs: `k=v k2="v 2"`, or the old `ENV k value with spaces`."""
    words = expand_words(inst.rest, env, escape)
    if not words:
        raise DockerfileError(f"{inst.where(path)} requires at least one argument")
    if "=" not in words[0]:
        name, _, value = inst.rest.partition(" ")
        if not value.strip():
            raise DockerfileError(f"{inst.where(path)} requires two arguments in the 'KEY VALUE' form")
        return [(name, expand(value.strip(), env, escape))]
    pairs = []
    for w in words:
        if "=" not in w:
            raise DockerfileError(f"{inst.where(path)}: syntax error - can't find = in {w!r}. Must be of the form: name=value")
        k, _, v = w.partition("=")
        if not k:
            raise DockerfileError(f"{inst.where(path)}: empty name in {w!r}")
        pairs.append((k, v))
    return pairs

