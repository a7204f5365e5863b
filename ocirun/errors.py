"""Errors that end an ocirun command with a one-line message and a documented exit code."""

from __future__ import annotations

# Docker's exit codes for failures of the runner itself.
EXIT_OCIRUN = 125  # ocirun failed (bad flag, image not found, pull error)
EXIT_CANNOT_INVOKE = 126  # command found but cannot be invoked
EXIT_NOT_FOUND = 127  # command not found


class OcirunError(Exception):
    """A failure to report as `ocirun: MESSAGE` and exit with `exit_code`.

    `detail` is extra text shown only with --debug/-D (or the command's -v).
    """

    def __init__(self, message: str, exit_code: int = EXIT_OCIRUN, detail: str | None = None):
        message = one_line(message)
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
        self.detail = detail


# Control characters a message may carry from user or registry input: shown escaped,
# so an error is always the one line `ocirun: ...`.
_ESCAPES = {i: f"\\x{i:02x}" for i in range(32)} | {10: "\\n", 13: "\\r", 9: "\\t", 127: "\\x7f"}


def one_line(text: str) -> str:
    """`text` with control characters (newlines included) escaped."""
    return text.translate(_ESCAPES)
