"""Docker's container commands: run, create, start, exec, ps, rm, logs, export, container ...

Each command collects raw strings, hands them to ocirun.run (options -> plan ->
container -> engine) and exits with docker's codes: 125 for ocirun's own
failures, 126/127 when the command cannot be invoked / is not found, else the
command's status.
"""

from __future__ import annotations

import importlib
import json
import os
import shlex
import sys
import tarfile
import time
from collections.abc import Callable
from typing import Any

import click

from ocirun.cli import DockerCommand, DockerGroup
from ocirun.errors import EXIT_OCIRUN, OcirunError
from ocirun.run.options import (
    IGNORED_FLAGS,
    RawRunArgs,
    build_options,
    parse_env_file,
    parse_env_item,
)
from ocirun.util.fmt import human_ago, table
from ocirun.util.paths import store_root

_SHORT_ALIASES = {"--memory": "-m", "--cpu-shares": "-c", "--label": "-l", "--attach": "-a", "--quiet": "-q"}
_RUN_CONTEXT = {"help_option_names": ["--help"], "allow_interspersed_args": False, "max_content_width": 100}
_CMD_CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
# The operand of the commands that act on containers by name or id.
CONTAINERS = click.argument("containers", nargs=-1, required=True, metavar="CONTAINER [CONTAINER...]")


def _root(ctx: click.Context) -> str | None:
    obj = ctx.find_root().obj or {}
    return obj.get("root")


def _stores(ctx: click.Context):
    from ocirun.run.containers import open_stores

    return open_stores(_root(ctx))


def _cstore(ctx: click.Context):
    """Only the container store (no image-store setup needed for ps/rm/logs)."""
    from ocirun.run.containers import ContainerStore

    root = store_root(_root(ctx))
    if os.path.exists(root) and not os.path.isdir(root):  # else ps would list nothing, silently
        raise OcirunError(f"cannot use the store at {root}: not a directory")
    return ContainerStore(root)


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
    ignored = list(click.get_current_context().meta.get("ocirun.ignored", []))
    ignored += [("--network", n) for n in params["network"]]
    return RawRunArgs(
        image=image,
        command=command,
        platform=params["platform"],
        pull=params["pull"],
        volume=params["volume"],
        mount=params["mount"],
        publish=params["publish"],
        publish_all=params["publish_all"],
        netcoop=params["netcoop"],
        env=params["env"],
        env_file=params["env_file"],
        workdir=params["workdir"],
        user=params["user"],
        entrypoint=params["entrypoint"],
        hostname=params["hostname"],
        add_host=params["add_host"],
        dns=params["dns"],
        kernel_release=params["kernel_release"],
        rm=rm,
        name=params["name"],
        detach=detach,
        interactive=params["interactive"],
        tty=params["tty"],
        share_tmp=params["share_tmp"],
        stop_signal=params["stop_signal"],
        gpus=params["gpus"],
        nv=params["nv"],
        rocm=params["rocm"],
        ignored=ignored,
    )


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
    from ocirun.run.runner import create_container, start_container, start_detached

    opts = build_options(_raw_args(image, command, params, rm, detach))
    store, cstore = _stores(ctx)
    c = create_container(store, cstore, opts)
    if detach:
        start_detached(cstore, c)
        click.echo(c.id)
        return 0
    return start_container(cstore, c)


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
    store, cstore = _stores(ctx)
    c = create_container(store, cstore, opts)
    click.echo(c.id)
    return 0


@click.command(cls=DockerCommand, context_settings=_CMD_CONTEXT)
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

    cstore = _cstore(ctx)
    if attach or interactive:
        if len(containers) > 1:
            raise OcirunError("you cannot start and attach multiple containers at once", EXIT_OCIRUN)
        return start_container(cstore, cstore.get(containers[0]))
    failed = 0
    for ref in containers:
        try:
            c = cstore.get(ref)
            if not cstore.is_running(c):
                start_detached(cstore, c)
            click.echo(ref)
        except OcirunError as exc:
            click.echo(f"ocirun: {exc.message}", err=True)
            failed = 1
    return failed


@click.command("exec", cls=DockerCommand, context_settings={**_CMD_CONTEXT, "allow_interspersed_args": False})
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
    cstore = _cstore(ctx)
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


# --- listing and removal --------------------------------------------------------------


def _command_text(c, no_trunc: bool) -> str:
    text = '"' + " ".join(shlex.quote(a) for a in c.plan.argv) + '"'
    if not no_trunc and len(text) > 22:
        text = text[:20] + "…\""
    return text


def _ps_rows(cstore, all_: bool, no_trunc: bool) -> list[list[str]]:
    from ocirun.run.containers import ports_text, status_text

    rows = []
    now = time.time()
    for c in cstore.list():
        if not all_ and cstore.status(c) != "running":
            continue
        rows.append([
            c.id if no_trunc else c.id[:12],
            c.image,
            _command_text(c, no_trunc),
            human_ago(c.created, now),
            status_text(cstore, c, now),
            ports_text(c),
            c.name,
        ])
    return rows


@click.command(cls=DockerCommand, context_settings=_CMD_CONTEXT)
@click.option("-a", "--all", "all_", is_flag=True, help="Show all containers (default shows just running)")
@click.option("-q", "--quiet", is_flag=True, help="Only display container IDs")
@click.option("--no-trunc", "no_trunc", is_flag=True, help="Don't truncate output")
@click.pass_context
def ps(ctx: click.Context, all_: bool, quiet: bool, no_trunc: bool) -> int:
    """List containers.

    \b
    Usage:  ocirun ps [OPTIONS]
    """
    cstore = _cstore(ctx)
    rows = _ps_rows(cstore, all_, no_trunc)
    if quiet:
        for r in rows:
            click.echo(r[0])
        return 0
    click.echo(table([["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"], *rows]))
    return 0


@click.command(cls=DockerCommand, context_settings=_CMD_CONTEXT)
@click.option("-f", "--force", is_flag=True, help="Force the removal of a running container (uses SIGKILL)")
@click.option("-v", "--volumes", is_flag=True, help="Accepted (ocirun has no anonymous volumes)")
@CONTAINERS
@click.pass_context
def rm(ctx: click.Context, containers: tuple[str, ...], force: bool, volumes: bool) -> int:
    """Remove one or more containers.

    \b
    Usage:  ocirun rm [OPTIONS] CONTAINER [CONTAINER...]
    """
    cstore = _cstore(ctx)
    failed = 0
    for ref in containers:
        try:
            cstore.remove(cstore.get(ref), force=force)
            click.echo(ref)
        except OcirunError as exc:
            click.echo(f"ocirun: {exc.message}", err=True)
            failed = 1
    return failed


@click.command(cls=DockerCommand, context_settings=_CMD_CONTEXT)
@click.option("-f", "--follow", is_flag=True, help="Follow log output")
@click.option("-n", "--tail", default="all", metavar="string", help='Number of lines to show from the end of the logs (default "all")')
@click.argument("container")
@click.pass_context
def logs(ctx: click.Context, container: str, follow: bool, tail: str) -> int:
    """Fetch the logs of a container.

    The log holds the output of a detached container (`run -d`, `start`).

    \b
    Usage:  ocirun logs [OPTIONS] CONTAINER
    """
    cstore = _cstore(ctx)
    c = cstore.get(container)
    out = sys.stdout.buffer
    try:
        f = open(c.log_path, "rb")
    except FileNotFoundError:
        return 0
    with f:
        data = f.read()
        if tail != "all":
            try:
                n = int(tail)
            except ValueError:
                raise OcirunError(f"invalid --tail value {tail!r}") from None
            lines = data.splitlines(keepends=True)
            data = b"".join(lines[-n:]) if n > 0 else b""
        out.write(data)
        out.flush()
        while follow:
            chunk = f.read()
            if chunk:
                out.write(chunk)
                out.flush()
                continue
            if not cstore.is_running(c):
                rest = f.read()
                out.write(rest)
                out.flush()
                break
            time.sleep(0.1)
    return 0


@click.command(cls=DockerCommand, context_settings=_CMD_CONTEXT)
@click.option("-o", "--output", metavar="string", help="Write to a file, instead of STDOUT")
@click.argument("container")
@click.pass_context
def export(ctx: click.Context, container: str, output: str | None) -> int:
    """Export a container's filesystem as a tar archive.

    \b
    Usage:  ocirun export [OPTIONS] CONTAINER
    """
    cstore = _cstore(ctx)
    c = cstore.get(container)
    if output is None and sys.stdout.isatty():
        raise OcirunError("cowardly refusing to save to a terminal. Use the -o flag or redirect", 1)
    tree = c.tree()
    tree.materialise_all()
    fileobj = open(output, "wb") if output else sys.stdout.buffer
    try:
        with tarfile.open(fileobj=fileobj, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            for name in sorted(os.listdir(c.rootfs)):
                tar.add(os.path.join(c.rootfs, name), arcname=name, recursive=True, filter=_export_filter)
    finally:
        if output:
            fileobj.close()
    return 0


def _export_filter(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    if info.name.rsplit("/", 1)[-1].startswith(".ocirun-copyup."):
        return None
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


# --- the `container` group --------------------------------------------------------------


@click.command("prune", cls=DockerCommand, context_settings=_CMD_CONTEXT)
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation")
@click.pass_context
def prune(ctx: click.Context, force: bool) -> int:
    """Remove all stopped containers.

    \b
    Usage:  ocirun container prune [OPTIONS]
    """
    if not force:
        click.echo("WARNING! This will remove all stopped containers.")
        if not click.confirm("Are you sure you want to continue?", default=False):
            return 0
    cstore = _cstore(ctx)
    cstore.prune_trash()
    deleted = []
    for c in cstore.list():
        if cstore.status(c) != "running":
            cstore.remove(c)
            deleted.append(c.id)
    if deleted:
        click.echo("Deleted Containers:")
        for cid in deleted:
            click.echo(cid)
        click.echo("")
    click.echo("Total reclaimed space: 0B")
    return 0


@click.command("inspect", cls=DockerCommand, context_settings=_CMD_CONTEXT)
@CONTAINERS
@click.pass_context
def inspect(ctx: click.Context, containers: tuple[str, ...]) -> int:
    """Display detailed information on one or more containers.

    \b
    Usage:  ocirun container inspect CONTAINER [CONTAINER...]
    """
    cstore = _cstore(ctx)
    out = []
    for ref in containers:
        c = cstore.get(ref)
        doc = c.to_json()
        doc["State"]["Status"] = cstore.status(c)
        doc["Path"] = str(c.path)
        out.append(doc)
    click.echo(json.dumps(out, indent=4))
    return 0


def _stopper(signame: str | None):
    @click.pass_context
    def command(ctx: click.Context, containers: tuple[str, ...], **kw: Any) -> int:
        import signal as _signal

        cstore = _cstore(ctx)
        failed = 0
        for ref in containers:
            try:
                c = cstore.get(ref)
                name = kw.get("signal") or signame or c.plan.stop_signal
                sig = getattr(_signal, name if name.startswith("SIG") else "SIG" + name, None)
                if sig is None and name.isdigit():
                    sig = int(name)
                if sig is None:
                    raise OcirunError(f"invalid signal: {name}")
                cstore.kill(c, sig, timeout=kw.get("time", 10))
                if cstore.is_running(c):
                    cstore.kill(c)
                click.echo(ref)
            except OcirunError as exc:
                click.echo(f"ocirun: {exc.message}", err=True)
                failed = 1
        return failed

    return command


stop = click.command("stop", cls=DockerCommand, context_settings=_CMD_CONTEXT, help="Stop one or more running containers (stop signal, then SIGKILL).")(
    click.option("-t", "--time", default=10, type=int, metavar="int", help="Seconds to wait before killing it")(
        CONTAINERS(_stopper(None))
    )
)
kill = click.command("kill", cls=DockerCommand, context_settings=_CMD_CONTEXT, help="Kill one or more running containers.")(
    click.option("-s", "--signal", default="KILL", help="Signal to send to the container")(
        CONTAINERS(_stopper("SIGKILL"))
    )
)


@click.group("container", cls=DockerGroup, context_settings=_CMD_CONTEXT)
def container() -> None:
    """Manage containers.

    \b
    Usage:  ocirun container COMMAND
    """


for _name, _cmd in {
    "create": create,
    "run": run,
    "start": start,
    "stop": stop,
    "kill": kill,
    "exec": exec_,
    "ls": ps,
    "list": ps,
    "ps": ps,
    "rm": rm,
    "remove": rm,
    "logs": logs,
    "export": export,
    "prune": prune,
    "inspect": inspect,
}.items():
    container.add_command(_cmd, _name)
for _name, _attr in {"commit": "commit", "cp": "cp"}.items():  # docker's `container commit|cp`: the lifecycle commands
    container.add_command(getattr(importlib.import_module("ocirun.cli.lifecycle_cmds"), _attr), _name)
