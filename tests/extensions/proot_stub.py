"""`python -m tests.extensions.proot_stub [-r ROOTFS] [extension options] CMD...`

A stand-in for `ocirun proot` while its CLI lands: -r, -b plus exactly the
extension options and plan hook that ocirun/cli/proot_cmd.py uses.
"""

from __future__ import annotations

import sys

import click

from ocirun.engine.extensions.cli import OPTIONS, plan_hook
from ocirun.errors import OcirunError


def _command(f):
    f = click.argument("command", nargs=-1, type=click.UNPROCESSED)(f)
    for opt in reversed(OPTIONS):
        f = opt(f)
    f = click.option("-r", "--rootfs", "rootfs", default="/")(f)
    f = click.option("-b", "--bind", "binds", multiple=True)(f)
    f = click.option("-w", "--cwd", "cwd", default="/")(f)
    return click.command(context_settings={"allow_interspersed_args": False})(f)


@_command
def main(command, rootfs, binds, cwd, **options):
    import os

    from ocirun.engine import run
    from ocirun.engine.path.bindings import parse_bind_spec
    from ocirun.engine.plan import EnginePlan

    plan = EnginePlan(argv=list(command) or ["/bin/sh"], rootfs=os.path.abspath(rootfs),
                      bindings=[parse_bind_spec(b) for b in binds], cwd=cwd)
    try:
        plan_hook(plan, options)
        code = run(plan)
    except OcirunError as exc:
        print(f"ocirun: {exc.message}", file=sys.stderr)
        sys.exit(exc.exit_code)
    sys.stdout.flush()
    sys.exit(code)


if __name__ == "__main__":
    main()
