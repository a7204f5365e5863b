"""`ocirun proot` once its command line is read: PRoot's options -> EnginePlan -> the
engine's run -> the exit status. No click here: the fast start (proot_argv.py) and
the click command (proot_cmd.py) both end in `run_guest`."""

from __future__ import annotations

import os
import sys

from ocirun.cli import GuestExit
from ocirun.cli.proot_ext import PLAN_HOOKS
from ocirun.cli.proot_rules import (
    apply_tmp_dir,
    default_order,
    env_flag,
    proot_verbose,
    resolve_identity,
    root_and_bindings,
    starting_directory,
)
from ocirun.errors import EXIT_OCIRUN


def build_engine_plan(options: dict, command: tuple[str, ...], order: list[str] | None = None):
    """EnginePlan from PRoot's options (no tracing here); `order`: the options as given."""
    from ocirun.engine.plan import EnginePlan

    order = default_order(options) if order is None else order
    rootfs, bindings = root_and_bindings(options, order)
    verbose = proot_verbose(options.get("verbose"))
    resolve_identity(options, order, quiet=verbose < 0)
    cwd = starting_directory(rootfs, bindings, options.get("cwd"), quiet=verbose < 0)
    env = dict(os.environ)
    env["PWD"] = cwd
    plan = EnginePlan(
        argv=list(command) or ["/bin/sh"],
        rootfs=rootfs,
        bindings=bindings,
        cwd=cwd,
        env=env,
        verbose=verbose,
        kill_on_exit=bool(options.get("kill_on_exit")),
        seccomp=not env_flag("PROOT_NO_SECCOMP"),
    )
    for hook in PLAN_HOOKS:
        hook(plan, options)
    return plan


def run_guest(options: dict, command: tuple[str, ...], order: list[str] | None) -> None:
    """Run the guest and exit with its status (125 for one a shell cannot report)."""
    from ocirun.engine import run

    apply_tmp_dir()
    code = run(build_engine_plan(options, command, order))
    sys.stdout.flush()
    raise GuestExit(code if 0 <= code <= 255 else EXIT_OCIRUN)
