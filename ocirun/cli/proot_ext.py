"""The extension options of `ocirun proot` (-k, -0, -i, -p, -n, -l, -q), in PRoot's
words, and the plan hooks that turn them into engine extensions and QEMU."""

from __future__ import annotations

from collections.abc import Callable

from ocirun.cli.proot_options import ProotOption
from ocirun.errors import EXIT_OCIRUN, OcirunError

TYPE_CHECKING = False  # typing's, without importing typing (start-up time)
if TYPE_CHECKING:
    from ocirun.engine.plan import EnginePlan

EXTENSION_OPTIONS: list[ProotOption] = [
    ProotOption(("-k", "--kernel-release"), "kernel_release", "Make current kernel appear as kernel release "
                "*string*.", metavar="string"),
    ProotOption(("-0", "--root-id"), "root_id", 'Make current user appear as "root" and fake its privileges.'),
    ProotOption(("-i", "--change-id"), "change_id", 'Make current user and group appear as *string* "uid:gid".',
                metavar="string"),
    ProotOption(("-p", "--port"), "ports", 'Map ports to others with the syntax as *string* "port_in:port_out ...".',
                metavar="string", multiple=True),
    ProotOption(("-n", "--netcoop"), "netcoop", "Activates the network cooperation mode."),
    ProotOption(("-l", "--link2symlink"), "link2symlink", "Replace hard links with symlinks, pretending they are "
                "really hardlinks (automatic where link() is refused; OCIRUN_LINK2SYMLINK=1 forces it).",
                tristate=True),
]
QEMU_OPTION = ProotOption(
    ("-q", "--qemu"), "qemu",
    "Execute guest programs through QEMU as specified by *command* (e.g. 'qemu-aarch64 -g 1234'). "
    "The native execution of host programs is still effective and the whole host rootfs is bound "
    "to /host-rootfs in the guest environment.",
    metavar="command",
)


def qemu_hook(plan: EnginePlan, options: dict) -> None:
    """Put the -q command on the plan; a missing QEMU fails here, before anything runs."""
    value = options.get("qemu")
    if not value:
        return
    import shlex

    from ocirun.engine.qemu.locate import describe

    try:
        words = shlex.split(value)
    except ValueError as exc:
        raise OcirunError(f"bad -q/--qemu command {value!r}: {exc}", EXIT_OCIRUN) from None
    describe(words)  # OcirunError(125) naming the missing program
    plan.qemu = words


def extensions_hook(plan: EnginePlan, options: dict) -> None:
    """Add the extensions the options ask for to the plan (-S implies -0)."""
    from ocirun.engine.extensions import build, parse_ids

    ids = None
    if options.get("change_id"):
        ids = parse_ids(options["change_id"])
    elif options.get("root_id") or options.get("alias_s"):
        ids = (0, 0)
    ports: dict[int, int] = {}
    if options.get("ports"):  # (imported only when used: start-up time)
        from ocirun.engine.extensions.shared.sockaddr import parse_port_specs

        try:
            ports = parse_port_specs(list(options["ports"]))
        except ValueError as exc:
            raise OcirunError(f"-p/--port: {exc}") from None
    release = options.get("kernel_release")
    if release is not None:
        from ocirun.engine.extensions.shared.utsname import FakeUname

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


# Each hook gets (plan, options) after the core plan is built and may add extensions
# or change the plan (-S asks for -0: extensions_hook checks options["alias_s"]).
PlanHook = Callable[["EnginePlan", dict], None]
PLAN_HOOKS: list[PlanHook] = [qemu_hook, extensions_hook]
OPTIONS: list[ProotOption] = [*EXTENSION_OPTIONS, QEMU_OPTION]
