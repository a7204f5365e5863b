"""`ocirun proot -q/--qemu COMMAND`: PRoot's option, as an entry of proot_cmd's extension lists."""

from __future__ import annotations

import shlex

import click

from ocirun.engine.qemu.locate import describe
from ocirun.errors import EXIT_OCIRUN, OcirunError

QEMU_OPTION = click.option(
    "-q", "--qemu", "qemu", metavar="command", default=None,
    help="Execute guest programs through QEMU as specified by *command* (e.g. 'qemu-aarch64 -g 1234'). "
    "The native execution of host programs is still effective and the whole host rootfs is bound "
    "to /host-rootfs in the guest environment.",
)


def qemu_plan_hook(plan: object, options: dict) -> None:
    """Put the -q command on the plan; a missing QEMU fails here, before anything runs."""
    value = options.get("qemu")
    if not value:
        return
    try:
        words = shlex.split(value)
    except ValueError as exc:
        raise OcirunError(f"bad -q/--qemu command {value!r}: {exc}", EXIT_OCIRUN) from None
    describe(words)  # OcirunError(125) naming the missing program
    plan.qemu = words  # type: ignore[attr-defined]
