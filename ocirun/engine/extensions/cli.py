"""The extension options of `ocirun proot` (-k, -0, -i, -p, -n, -l), in PRoot's words,
and the plan hook that turns them into extensions. ocirun/cli/proot_cmd.py adds
OPTIONS to its EXTENSION_OPTIONS and plan_hook to its PLAN_HOOKS."""

from __future__ import annotations

from collections.abc import Callable

import click

from ocirun.errors import OcirunError

OPTIONS: list[Callable] = [
    click.option(
        "-k", "--kernel-release", "kernel_release", metavar="string", default=None,
        help="Make current kernel appear as kernel release *string*.",
    ),
    click.option(
        "-0", "--root-id", "root_id", is_flag=True,
        help='Make current user appear as "root" and fake its privileges.',
    ),
    click.option(
        "-i", "--change-id", "change_id", metavar="string", default=None,
        help='Make current user and group appear as *string* "uid:gid".',
    ),
    click.option(
        "-p", "--port", "ports", metavar="string", multiple=True,
        help='Map ports to others with the syntax as *string* "port_in:port_out ...".',
    ),
    click.option(
        "-n", "--netcoop", "netcoop", is_flag=True,
        help="Activates the network cooperation mode.",
    ),
    click.option(
        "-l", "--link2symlink", "link2symlink", is_flag=True, default=None,
        help="Replace hard links with symlinks, pretending they are really hardlinks "
        "(automatic where link() is refused; OCIRUN_LINK2SYMLINK=1 forces it).",
    ),
]


def parse_ids(spec: str) -> tuple[int, int]:
    """`-i uid:gid` (PRoot also accepts a lone uid: gid = uid)."""
    uid_s, sep, gid_s = spec.partition(":")
    try:
        uid = int(uid_s)
        gid = int(gid_s) if sep else uid
    except ValueError:
        raise OcirunError(f"-i/--change-id: {spec!r} is not of the form uid:gid") from None
    if not (0 <= uid < 2**32 - 1 and 0 <= gid < 2**32 - 1):
        raise OcirunError(f"-i/--change-id: {spec!r}: ids out of range")
    return uid, gid


def plan_hook(plan, options: dict) -> None:
    """Add the extensions the options ask for to the plan (-S implies -0)."""
    from ocirun.engine.extensions import build
    from ocirun.engine.extensions.sockaddr import parse_port_specs

    ids = None
    if options.get("change_id"):
        ids = parse_ids(options["change_id"])
    elif options.get("root_id") or options.get("alias_s"):
        ids = (0, 0)
    try:
        ports = parse_port_specs(list(options.get("ports") or ()))
    except ValueError as exc:
        raise OcirunError(f"-p/--port: {exc}") from None
    release = options.get("kernel_release")
    if release is not None:
        from ocirun.engine.extensions.utsname import FakeUname

        try:
            FakeUname.parse(release)
        except ValueError as exc:
            raise OcirunError(f"-k/--kernel-release: {exc}") from None
    plan.extensions.extend(
        build(
            rootfs=plan.rootfs,
            ids=ids,
            kernel_release=release,
            ports=ports,
            netcoop=bool(options.get("netcoop")),
            link2symlink=True if options.get("link2symlink") else None,
        )
    )
