"""Docker's commands that run containers: run, create, start, exec.

Each command collects raw strings, hands them to ocirun.run (options -> plan ->
container -> engine) and exits with docker's codes: 125 for ocirun's own
failures, 126/127 when the command cannot be invoked / is not found, else the
command's status.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from ocirun.cli.group import DockerCommand
from ocirun.cli.stores import container_store, each_container, root_option, stores
from ocirun.errors import EXIT_OCIRUN, OcirunError
from ocirun.run.options import (
    IGNORED_FLAGS,
    RawRunArgs,
    build_options,
    parse_env_file,
    parse_env_item,
)
from ocirun.util.records import fields

if TYPE_CHECKING:
    from ocirun.run.containers import Container

_SHORT_ALIASES = {"--memory": "-m", "--cpu-shares": "-c", "--label": "-l", "--attach": "-a", "--quiet": "-q"}
_RUN_CONTEXT = {"help_option_names": ["--help"], "allow_interspersed_args": False, "max_content_width": 100}
CMD_CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
# The operand of the commands that act on containers by name or id.
CONTAINERS = click.argument("containers", nargs=-1, required=True, metavar="CONTAINER [CONTAINER...]")


# --- run / create options ------------------------------------------------------------


class _RunCommand(DockerCommand):
    """`run`/`create`: the flags ocirun ignores (IGNORED_FLAGS) are taken out of the
    arguments before click parses them (cheaper than ~70 hidden options), and
    remembered in ctx.meta for one warning each."""

    option_groups = [
        ("Container", ["detach", "rm", "name", "entrypoint", "workdir", "user", "env", "env_file", "interactive",
                       "tty", "hostname", "kernel_release", "stop_signal"]),
        ("Image", ["platform", "pull"]),
        ("Filesystem", ["volume", "mount", "share_tmp"]),
        ("Network (the host's; ports are mapped, not isolated)", ["publish", "publish_all", "netcoop", "network",
                                                                  "add_host", "dns"]),
    ]

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        pass

    def get_help(self, ctx: click.Context) -> str:
        ignored = sorted(o for o in IGNORED_FLAGS if o.startswith("--"))
        return super().get_help(ctx) + (
            "\nAccepted and ignored, with one warning (they need privileges, cgroups or namespaces):\n  "
            + "\n  ".join(_wrap(" ".join(ignored), 96)) + "\n"
        )

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        valued = {o: not p.is_flag for p in self.params if isinstance(p, click.Option) for o in p.opts}
        ignored: list[tuple[str, str | None]] = []
        out: list[str] = []
        i = 0
        while i < len(args):
            arg = args[i]
            if arg == "--" or not arg.startswith("-") or arg == "-":
                out += args[i:]
                break
            name, eq, value = arg.partition("=")
            long_name = _LONG_OF.get(name, name)
            if long_name not in IGNORED_FLAGS and not name.startswith("--") and name[:2] in _LONG_OF and len(name) > 2:
                long_name, eq, value = _LONG_OF[name[:2]], "=", arg[2:]  # -m1g
            if long_name in IGNORED_FLAGS:
                if IGNORED_FLAGS[long_name] and not eq:
                    value = args[i + 1] if i + 1 < len(args) else None
                    i += 1
                ignored.append((long_name, value if IGNORED_FLAGS[long_name] else None))
                i += 1
                continue
            out.append(arg)
            if valued.get(name) and not eq and i + 1 < len(args):
                out.append(args[i + 1])
                i += 1
            i += 1
        ctx.meta["ocirun.ignored"] = ignored
        return super().parse_args(ctx, out)


def _wrap(text: str, width: int) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width, break_on_hyphens=False)


# short aliases of ignored flags -> their long name
_LONG_OF = {short: long for long, short in _SHORT_ALIASES.items()}


_RUN_OPTIONS: list[Callable] = [
    click.option("--add-host", "add_host", multiple=True, metavar="list", help="Add a custom host-to-IP mapping (host:ip)"),
    click.option("--dns", multiple=True, metavar="list", help="Set custom DNS servers"),
    click.option("--entrypoint", metavar="string", default=None, help="Overwrite the default ENTRYPOINT of the image (drops its CMD)"),
    click.option("-e", "--env", multiple=True, metavar="list", help="Set environment variables"),
    click.option("--env-file", "env_file", multiple=True, metavar="list", help="Read in a file of environment variables"),
    click.option("--gpus", metavar="gpu-request", help="NVIDIA GPUs to add: all, a count, or device=ID[,ID] (the host driver is bound in)"),
    click.option("-h", "--hostname", metavar="string", help="Container host name"),
    click.option("-i", "--interactive", is_flag=True, help="Keep STDIN open (always: the terminal is yours)"),
    click.option("-k", "--kernel-release", "kernel_release", metavar="string", help="Make the kernel release look like this one (uname -r)"),
    click.option("--mount", multiple=True, metavar="mount", help="Attach a bind mount: type=bind,src=PATH,dst=PATH[,readonly]"),
    click.option("--name", metavar="string", help="Assign a name to the container"),
    click.option("--net", "--network", "network", multiple=True, metavar="network", help="Only 'host' exists here (others are ignored with a warning)"),
    click.option("--nv", is_flag=True, help="Apptainer's --nv: all NVIDIA GPUs (= --gpus all)"),
    click.option("--netcoop", is_flag=True, help="Network cooperation: bind ports 0 and remember them for connect (PRoot -n)"),
    click.option("--platform", metavar="string", help="Set platform if server is multi-platform capable (os/arch[/variant], arm64, ...)"),
    click.option("-p", "--publish", multiple=True, metavar="list", help="Publish a container's port(s) to the host ([ip:]hostPort:containerPort[/proto])"),
    click.option("-P", "--publish-all", "publish_all", is_flag=True, help="Publish all exposed ports to random ports"),
    click.option("--pull", default="missing", metavar="string", help='Pull image before running ("always", "missing", "never")'),
    click.option("--share-tmp", "share_tmp", is_flag=True, help="Share the host's /tmp instead of the container's own"),
    click.option("--rocm", is_flag=True, help="AMD GPUs: /dev/kfd, /dev/dri and the ROCm libraries bound in"),
    click.option("--stop-signal", "stop_signal", metavar="string", help="Signal to stop the container"),
    click.option("-t", "--tty", is_flag=True, help="Allocate a pseudo-TTY (accepted: the terminal is yours)"),
    click.option("-u", "--user", metavar="string", help="Username or UID (format: <name|uid>[:<group|gid>])"),
    click.option("-v", "--volume", multiple=True, metavar="list", help="Bind mount a volume (host-path:container-path[:ro|rw])"),
    click.option("-w", "--workdir", metavar="string", help="Working directory inside the container"),
]


def _run_options(f: Callable) -> Callable:
    for opt in reversed(_RUN_OPTIONS):
        f = opt(f)
    return f


def _raw_args(image: str, command: tuple[str, ...], params: dict[str, Any], rm: bool, detach: bool) -> RawRunArgs:
    """The click parameters as RawRunArgs (one field each, of the same name); --network
    values go with the ignored flags (only the host's network exists)."""
    ignored = list(click.get_current_context().meta.get("ocirun.ignored", []))
    ignored += [("--network", n) for n in params["network"]]
    names = {f.name for f in fields(RawRunArgs)}
    given = {k: v for k, v in params.items() if k in names}
    return RawRunArgs(image=image, command=command, rm=rm, detach=detach, ignored=ignored, **given)


@click.command(cls=_RunCommand, context_settings=_RUN_CONTEXT)
@click.option("-d", "--detach", is_flag=True, help="Run container in background and print container ID")
@click.option("--rm", is_flag=True, help="Automatically remove the container when it exits")
@_run_options
@click.argument("image")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def run(ctx: click.Context, image: str, command: tuple[str, ...], detach: bool, rm: bool, **params: Any) -> int:
    """Create and run a new container from an image.

    \b
    Usage:  ocirun run [OPTIONS] IMAGE [COMMAND] [ARG...]
            ocirun [OPTIONS] IMAGE [COMMAND] [ARG...]
    """
    from ocirun.cli.run_argv import run_container

    return run_container(_raw_args(image, command, params, rm, detach), root_option(ctx))


@click.command(cls=_RunCommand, context_settings=_RUN_CONTEXT)
@click.option("--rm", is_flag=True, help="Automatically remove the container when it exits")
@_run_options
@click.argument("image")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def create(ctx: click.Context, image: str, command: tuple[str, ...], rm: bool, **params: Any) -> int:
    """Create a new container.

    The image is not copied: creating a container costs one directory listing.

    \b
    Usage:  ocirun create [OPTIONS] IMAGE [COMMAND] [ARG...]
    """
    from ocirun.run.runner import create_container

    opts = build_options(_raw_args(image, command, params, rm, False))
    store, cstore = stores(ctx)
    c = create_container(store, cstore, opts)
    click.echo(c.id)
    return 0


@click.command(cls=DockerCommand, context_settings=CMD_CONTEXT)
@click.option("-a", "--attach", is_flag=True, help="Attach STDOUT/STDERR: run in the foreground and exit with its status")
@click.option("-i", "--interactive", is_flag=True, help="Attach container's STDIN (accepted)")
@CONTAINERS
@click.pass_context
def start(ctx: click.Context, containers: tuple[str, ...], attach: bool, interactive: bool) -> int:
    """Start one or more stopped containers.

    \b
    Usage:  ocirun start [OPTIONS] CONTAINER [CONTAINER...]
    """
    from ocirun.run.runner import start_container, start_detached

    cstore = container_store(ctx)
    if attach or interactive:
        if len(containers) > 1:
            raise OcirunError("you cannot start and attach multiple containers at once", EXIT_OCIRUN)
        return start_container(cstore, cstore.get(containers[0]))

    def start_one(c: Container) -> None:
        if not cstore.is_running(c):
            start_detached(cstore, c)

    return each_container(cstore, containers, start_one)


@click.command("exec", cls=DockerCommand, context_settings={**CMD_CONTEXT, "allow_interspersed_args": False})
@click.option("-d", "--detach", is_flag=True, help="Detached mode: run command in the background")
@click.option("-e", "--env", multiple=True, metavar="list", help="Set environment variables")
@click.option("--env-file", "env_file", multiple=True, metavar="list", help="Read in a file of environment variables")
@click.option("-i", "--interactive", is_flag=True, help="Keep STDIN open (accepted)")
@click.option("-t", "--tty", is_flag=True, help="Allocate a pseudo-TTY (accepted)")
@click.option("-u", "--user", metavar="string", help="Username or UID (format: <name|uid>[:<group|gid>])")
@click.option("-w", "--workdir", metavar="string", help="Working directory inside the container")
@click.argument("container")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED, metavar="COMMAND [ARG...]")
@click.pass_context
def exec_(ctx: click.Context, container: str, command: tuple[str, ...], detach: bool, env: tuple[str, ...],
          env_file: tuple[str, ...], interactive: bool, tty: bool, user: str | None, workdir: str | None) -> int:
    """Execute a command in a container.

    The container may be running or stopped: the command is a new process on its tree.

    \b
    Usage:  ocirun exec [OPTIONS] CONTAINER COMMAND [ARG...]
    """
    from ocirun.run.runner import exec_in

    host_env = dict(os.environ)
    extra: dict[str, str] = {}
    for path in env_file:
        extra.update(parse_env_file(path, host_env))
    for item in env:
        pair = parse_env_item(item, host_env)
        if pair:
            extra[pair[0]] = pair[1]
    if workdir is not None and not workdir.startswith("/"):
        raise OcirunError(f"the working directory {workdir!r} is invalid, it needs to be an absolute path")
    cstore = container_store(ctx)
    c = cstore.get(container)
    if detach:
        pid = os.fork()
        if pid:
            return 0
        os.setsid()
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        try:
            os._exit(exec_in(cstore, c, list(command), extra, workdir, user))
        except BaseException:
            os._exit(EXIT_OCIRUN)
    return exec_in(cstore, c, list(command), extra, workdir, user)
