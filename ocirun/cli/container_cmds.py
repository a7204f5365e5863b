"""Docker's commands on existing containers: ps, rm, logs, export, stop, kill, and the
`container` group (which also holds run, create, start and exec of run_cmds.py)."""

from __future__ import annotations

import json
import os
import shlex
import sys
import tarfile
import time
from typing import TYPE_CHECKING, Any

import click

from ocirun.cli.group import DockerCommand, DockerGroup
from ocirun.cli.run_cmds import CMD_CONTEXT, CONTAINERS, create, exec_, run, start
from ocirun.cli.stores import container_store, each_container
from ocirun.errors import OcirunError
from ocirun.util.fmt import human_ago, table
from ocirun.util.imports import import_module

if TYPE_CHECKING:
    from ocirun.run.containers import Container

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


@click.command(cls=DockerCommand, context_settings=CMD_CONTEXT)
@click.option("-a", "--all", "all_", is_flag=True, help="Show all containers (default shows just running)")
@click.option("-q", "--quiet", is_flag=True, help="Only display container IDs")
@click.option("--no-trunc", "no_trunc", is_flag=True, help="Don't truncate output")
@click.pass_context
def ps(ctx: click.Context, all_: bool, quiet: bool, no_trunc: bool) -> int:
    """List containers.

    \b
    Usage:  ocirun ps [OPTIONS]
    """
    cstore = container_store(ctx)
    rows = _ps_rows(cstore, all_, no_trunc)
    if quiet:
        for r in rows:
            click.echo(r[0])
        return 0
    click.echo(table([["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"], *rows]))
    return 0


@click.command(cls=DockerCommand, context_settings=CMD_CONTEXT)
@click.option("-f", "--force", is_flag=True, help="Force the removal of a running container (uses SIGKILL)")
@click.option("-v", "--volumes", is_flag=True, help="Accepted (ocirun has no anonymous volumes)")
@CONTAINERS
@click.pass_context
def rm(ctx: click.Context, containers: tuple[str, ...], force: bool, volumes: bool) -> int:
    """Remove one or more containers.

    \b
    Usage:  ocirun rm [OPTIONS] CONTAINER [CONTAINER...]
    """
    cstore = container_store(ctx)
    return each_container(cstore, containers, lambda c: cstore.remove(c, force=force))


@click.command(cls=DockerCommand, context_settings=CMD_CONTEXT)
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
    cstore = container_store(ctx)
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


@click.command(cls=DockerCommand, context_settings=CMD_CONTEXT)
@click.option("-o", "--output", metavar="string", help="Write to a file, instead of STDOUT")
@click.argument("container")
@click.pass_context
def export(ctx: click.Context, container: str, output: str | None) -> int:
    """Export a container's filesystem as a tar archive.

    \b
    Usage:  ocirun export [OPTIONS] CONTAINER
    """
    cstore = container_store(ctx)
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


@click.command("prune", cls=DockerCommand, context_settings=CMD_CONTEXT)
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
    cstore = container_store(ctx)
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


@click.command("inspect", cls=DockerCommand, context_settings=CMD_CONTEXT)
@CONTAINERS
@click.pass_context
def inspect(ctx: click.Context, containers: tuple[str, ...]) -> int:
    """Display detailed information on one or more containers.

    \b
    Usage:  ocirun container inspect CONTAINER [CONTAINER...]
    """
    cstore = container_store(ctx)
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

        cstore = container_store(ctx)

        def stop_one(c: Container) -> None:
            name = kw.get("signal") or signame or c.plan.stop_signal
            sig = getattr(_signal, name if name.startswith("SIG") else "SIG" + name, None)
            if sig is None and name.isdigit():
                sig = int(name)
            if sig is None:
                raise OcirunError(f"invalid signal: {name}")
            cstore.kill(c, sig, timeout=kw.get("time", 10))
            if cstore.is_running(c):
                cstore.kill(c)

        return each_container(cstore, containers, stop_one)

    return command


stop = click.command("stop", cls=DockerCommand, context_settings=CMD_CONTEXT, help="Stop one or more running containers (stop signal, then SIGKILL).")(
    click.option("-t", "--time", default=10, type=int, metavar="int", help="Seconds to wait before killing it")(
        CONTAINERS(_stopper(None))
    )
)
kill = click.command("kill", cls=DockerCommand, context_settings=CMD_CONTEXT, help="Kill one or more running containers.")(
    click.option("-s", "--signal", default="KILL", help="Signal to send to the container")(
        CONTAINERS(_stopper("SIGKILL"))
    )
)


@click.group("container", cls=DockerGroup, context_settings=CMD_CONTEXT)
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
    container.add_command(getattr(import_module("ocirun.cli.lifecycle_cmds"), _attr), _name)
