"""The small steps of a path walk (PathTranslator._walk): what a path ends with,
following a symlink's target, and the suffix the host path keeps for the kernel."""

from __future__ import annotations

# What the path ends with: plain name, '/', or '.'/'..' (both need a directory).
TAIL_NONE, TAIL_SLASH, TAIL_DOT = 0, 1, 2


def tail_kind(path: str) -> int:
    """Trailing slashes do not hide a last '.' (rmdir("d/./") is EINVAL, as for "d/.")."""
    last = path.rstrip("/").rpartition("/")[2]
    if last == "." or last == "..":
        return TAIL_DOT
    return TAIL_SLASH if path.endswith("/") else TAIL_NONE


def push_target(target: str, gs: list[str], hs: list[str], todo: list[str], floor: int) -> None:
    """Go on resolving a symlink's target: from the floor (the root) if absolute."""
    if target[0] == "/":
        del gs[floor:]
        del hs[floor:]
    todo.extend([s for s in reversed(target.split("/")) if s and s != "."])


def host_with_tail(host: str, out: int, below_root: bool) -> str:
    """The host path with the suffix the guest path asks the kernel to check."""
    if out == TAIL_SLASH:
        return host + "/" if below_root else host
    if out == TAIL_DOT:
        return host + "/." if host != "/" else "/."
    return host
