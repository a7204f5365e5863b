"""`ocirun proot`'s options as a table (the extension options' rows are in proot_ext.py).

The table is the one source: proot_cmd.py makes the click command from it (for
--help, --version and every error message) and proot_argv.py reads a command
line with it without importing click.
"""

from __future__ import annotations

from ocirun.util.records import dataclass


@dataclass(frozen=True)
class ProotOption:
    """One option: a flag unless it has a metavar (then it takes a value)."""

    names: tuple[str, ...]
    dest: str
    help: str
    metavar: str | None = None
    multiple: bool = False
    integer: bool = False
    tristate: bool = False  # a flag that is None when not given ("automatic"), not False

    @property
    def is_flag(self) -> bool:
        return self.metavar is None

    def empty(self) -> object:
        """The value when the option is not given (as click gives it)."""
        if self.multiple:
            return ()
        return False if self.is_flag and not self.tristate else None


# Regular options, as PRoot's manual describes them.
REGULAR_OPTIONS: list[ProotOption] = [
    ProotOption(("-r", "--rootfs"), "rootfs", "Use *path* as the new guest root file-system, default is /.",
                metavar="path"),
    ProotOption(("-b", "-m", "--bind", "--mount"), "binds", "Make the content of *path* accessible in the guest "
                "rootfs (host_path[:guest_location], a trailing ! does not dereference the guest location).",
                metavar="path", multiple=True),
    ProotOption(("-w", "--pwd", "--cwd"), "cwd", "Set the initial working directory to *path*.", metavar="path"),
    ProotOption(("-v", "--verbose"), "verbose", "Set the level of debug information to *value* (negative: quiet; "
                "2 and more trace syscalls).", metavar="value", integer=True),
    ProotOption(("--kill-on-exit",), "kill_on_exit", "Kill all processes on command exit."),
]

# Alias options.
ALIAS_OPTIONS: list[ProotOption] = [
    ProotOption(("-R",), "alias_r", "Alias: -r *path* + a couple of recommended -b.", metavar="path"),
    ProotOption(("-S",), "alias_s", "Alias: -0 -r *path* + a couple of recommended -b.", metavar="path"),
]
