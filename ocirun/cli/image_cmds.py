"""Image commands: pull, images, rmi, inspect, load, login, logout, `image ...`, `system ...`.

They read and write the store of layers.store (its root from the global --root /
$OCIRUN_ROOT, else $XDG_DATA_HOME/ocirun) and print what docker prints.
"""

from __future__ import annotations

import datetime as _dt
import json
import sys
from typing import Any

import click

from ocirun.cli.group import DockerCommand, DockerGroup
from ocirun.cli.stores import image_store
from ocirun.errors import OcirunError
from ocirun.util.fmt import human_ago, human_size, table

CONTEXT = {"help_option_names": ["-h", "--help"]}


# -- pull / load ---------------------------------------------------------------------------------


@click.command("pull", cls=DockerCommand, context_settings=CONTEXT)
@click.option("--platform", metavar="PLATFORM", help="Pull this platform's image (e.g. linux/arm64).")
@click.option("-q", "--quiet", is_flag=True, help="Suppress verbose output.")
@click.argument("ref", metavar="NAME[:TAG|@DIGEST]")
@click.pass_context
def pull(ctx: click.Context, platform: str | None, quiet: bool, ref: str) -> None:
    """Download an image from a registry (or an archive) into the store."""
    from registry.reference import ARCHIVE_TRANSPORTS

    store = image_store(ctx)
    archive = ref.startswith(tuple(t + ":" for t in ARCHIVE_TRANSPORTS))
    if not quiet and not archive and ":" not in ref.rsplit("/", 1)[-1] and "@" not in ref:
        click.echo("Using default tag: latest")
    try:
        before = store.resolve(ref, platform=platform)
    except OcirunError:
        before = None
    rec = store.pull(ref, platform=platform, progress=False if quiet else None)
    if quiet:
        click.echo(_canonical(ref))
        return
    click.echo(f"Digest: {rec.repo_digests[0].partition('@')[2] if rec.repo_digests else rec.manifest_digest}")
    status = "Image is up to date" if before is not None and before.id == rec.id else "Downloaded newer image"
    click.echo(f"Status: {status} for {_familiar(ref)} ({rec.platform}, image {rec.short_id})")
    click.echo(_canonical(ref))


def _canonical(ref: str) -> str:
    try:
        from registry.reference import Reference, parse_reference

        r = parse_reference(ref)
        return str(r) if isinstance(r, Reference) else ref
    except OcirunError:
        return ref


def _familiar(ref: str) -> str:
    try:
        from registry.reference import Reference, parse_reference

        r = parse_reference(ref)
        return r.familiar if isinstance(r, Reference) else ref
    except OcirunError:
        return ref


@click.command("load", cls=DockerCommand, context_settings=CONTEXT)
@click.option("-i", "--input", "path", metavar="FILE",
              help="Read from a `docker save` tar archive or an OCI layout (directory or tar), "
                   "instead of STDIN.")
@click.option("-q", "--quiet", is_flag=True, help="Suppress the load output.")
@click.pass_context
def load(ctx: click.Context, path: str | None, quiet: bool) -> None:
    """Load images from a tar archive or an OCI layout."""
    import os
    import shutil
    import tempfile

    store = image_store(ctx)
    tmp = None
    empty = False
    if path is None:
        if sys.stdin.isatty():
            raise OcirunError("requested load from stdin, but stdin is empty (use -i FILE)")
        fd, tmp = tempfile.mkstemp(prefix="load-", suffix=".tar", dir=store.tmp_dir)
        try:
            with os.fdopen(fd, "wb") as f:
                shutil.copyfileobj(sys.stdin.buffer, f, 1 << 20)
                empty = f.tell() == 0
        except BaseException:  # Ctrl-C while reading stdin: leave no copy behind
            os.unlink(tmp)
            raise
        path = tmp
    try:
        if empty:
            raise OcirunError("requested load from stdin, but stdin is empty (use -i FILE)")
        loaded = store.load(path)
    except OcirunError as exc:
        if tmp:  # the user gave stdin: name it, not our temporary copy
            exc.message = exc.message.replace(tmp, "stdin")
        raise
    finally:
        if tmp:
            os.unlink(tmp)
    if quiet:
        return
    seen: set[str] = set()
    for name, rec in loaded:
        line = f"Loaded image: {name}" if name else f"Loaded image ID: {rec.id}"
        if line not in seen:
            seen.add(line)
            click.echo(line)


# -- images -------------------------------------------------------------------------------------


@click.command("images", cls=DockerCommand, context_settings=CONTEXT)
@click.option("-q", "--quiet", is_flag=True, help="Only show image IDs.")
@click.option("--digests", is_flag=True, help="Show digests.")
@click.option("--no-trunc", is_flag=True, help="Don't truncate output.")
@click.option("-a", "--all", "all_", is_flag=True, help="Show all images (accepted for docker compatibility).")
@click.argument("repository", required=False)
@click.pass_context
def images(ctx: click.Context, quiet: bool, digests: bool, no_trunc: bool, all_: bool, repository: str | None) -> None:
    """List images."""
    from layers.sites import all_table_rows, is_site_record

    store = image_store(ctx)
    rows = all_table_rows(store)
    if repository:
        from layers.records import familiar

        want, tag = repository, None
        if ":" in repository.rsplit("/", 1)[-1]:
            want, _, tag = repository.rpartition(":")
        want = familiar(want)
        rows = [r for r in rows if r[0] == want and (tag is None or r[1] == tag)]
    if quiet:
        seen: list[str] = []
        for _repo, _tag, rec, _dig in rows:
            ident = rec.id if no_trunc else rec.short_id
            if ident not in seen:
                seen.append(ident)
        for ident in seen:
            click.echo(ident)
        return
    sites = bool(store.additional)  # STORE: where each image comes from, when there is a choice
    head = ["REPOSITORY", "TAG"] + (["DIGEST"] if digests else []) + ["IMAGE ID", "PLATFORM", "CREATED", "SIZE"]
    rows_out = [head + (["STORE"] if sites else [])]
    for repo, tag, rec, dig in rows:
        rows_out.append(
            [repo, tag]
            + ([dig or "<none>"] if digests else [])
            + [rec.id if no_trunc else rec.short_id, rec.platform, human_ago(rec.created), human_size(rec.size)]
            + ([str(rec.store) if is_site_record(store, rec) else "user"] if sites else [])
        )
    click.echo(table(rows_out))


# -- rmi -----------------------------------------------------------------------------------------


@click.command("rmi", cls=DockerCommand, context_settings=CONTEXT)
@click.option("-f", "--force", is_flag=True, help="Force removal of the image (even if a container uses it).")
@click.argument("refs", nargs=-1, required=True, metavar="IMAGE [IMAGE...]")
@click.pass_context
def rmi(ctx: click.Context, force: bool, refs: tuple[str, ...]) -> None:
    """Remove one or more images."""
    store = image_store(ctx)
    errors = []
    for ref in refs:
        try:
            for line in store.remove(ref, force=force):
                click.echo(line)
        except OcirunError as exc:
            errors.append(_site_refusal(store, ref) or exc.message)
    if errors:
        raise OcirunError("; ".join(errors))


def _site_refusal(store: Any, ref: str) -> str | None:
    """rmi of an image only a read-only site store has: say so (not "No such image")."""
    from layers.sites import find_image, is_site_record

    try:
        rec = find_image(store, ref)
    except OcirunError:
        return None
    if rec is not None and is_site_record(store, rec):
        return f"cannot remove {ref}: it is in the read-only image store {rec.store}"
    return None


# -- inspect --------------------------------------------------------------------------------------


def inspect_doc(store: Any, rec: Any) -> dict[str, Any]:
    """docker image inspect's shape, plus `Rootfs` (the unpacked tree) and `Platform`."""
    cfg = rec.config
    doc: dict[str, Any] = {
        "Id": rec.id,
        "RepoTags": rec.repo_tags,
        "RepoDigests": rec.repo_digests,
        "Parent": "",
        "Comment": cfg.get("comment", ""),
        "Created": rec.created,
        "DockerVersion": cfg.get("docker_version", ""),
        "Author": cfg.get("author", ""),
        "Config": cfg.get("config") or {},
        "Architecture": cfg.get("architecture", ""),
        "Os": cfg.get("os", ""),
        "Size": rec.size,
        "GraphDriver": {"Name": "ocirun", "Data": {"RootDir": str(rec.rootfs)}},
        "RootFS": {"Type": "layers", "Layers": list((cfg.get("rootfs") or {}).get("diff_ids") or [])},
        "Metadata": {"LastTagTime": _dt.datetime.fromtimestamp(rec.pulled, _dt.UTC).isoformat()},
        "ManifestDigest": rec.manifest_digest,
        "Platform": rec.platform,
        "Rootfs": str(rec.rootfs.absolute()),
        "Ownership": str(rec.ownership_path.absolute()),
        "Store": str(rec.store or store.root),
    }
    if cfg.get("variant"):
        doc["Variant"] = cfg["variant"]
    if cfg.get("os.version"):
        doc["OsVersion"] = cfg["os.version"]
    return doc


@click.command("inspect", cls=DockerCommand, context_settings=CONTEXT)
@click.option("--platform", metavar="PLATFORM", help="Inspect the image of this platform.")
@click.option("-f", "--format", "fmt", metavar="FIELD",
              help="Print one top-level field per image (e.g. Id, Rootfs, '{{.Id}}').")
@click.argument("refs", nargs=-1, required=True, metavar="IMAGE [IMAGE...]")
@click.pass_context
def inspect(ctx: click.Context, platform: str | None, fmt: str | None, refs: tuple[str, ...]) -> None:
    """Display detailed information on one or more images (a JSON array)."""
    from layers.sites import find_image

    store = image_store(ctx)
    docs, missing = [], []
    for ref in refs:
        rec = find_image(store, ref, platform=platform)  # the user's store, then the site stores
        if rec is None:
            missing.append(ref)
        else:
            docs.append(inspect_doc(store, rec))
    if fmt:
        key = fmt.strip().removeprefix("{{").removesuffix("}}").strip().removeprefix(".")
        for d in docs:
            val = d.get(key)
            click.echo(val if isinstance(val, str) else json.dumps(val))
    else:
        click.echo(json.dumps(docs, indent=4))
    if missing:
        raise OcirunError(f"No such image: {', '.join(missing)}")


# -- login / logout --------------------------------------------------------------------------------


def _server(server: str | None) -> str:
    """docker's server argument: a host[:port], maybe written as a URL."""
    if not server:
        return "docker.io"
    s = server.strip()
    for prefix in ("https://", "http://"):
        if s.startswith(prefix):
            s = s[len(prefix) :]
    s = s.split("/", 1)[0]
    return s


@click.command("login", cls=DockerCommand, context_settings=CONTEXT)
@click.option("-u", "--username", help="Username.")
@click.option("-p", "--password", help="Password (prefer --password-stdin).")
@click.option("--password-stdin", is_flag=True, help="Take the password from stdin.")
@click.argument("server", required=False)
@click.pass_context
def login(ctx: click.Context, username: str | None, password: str | None, password_stdin: bool, server: str | None) -> None:
    """Log in to a registry (Docker Hub when SERVER is not given)."""
    from registry.client import login as check_and_store

    if password and password_stdin:
        raise OcirunError("--password and --password-stdin are mutually exclusive")
    if password_stdin:
        if not username:
            raise OcirunError("must provide --username with --password-stdin")
        password = sys.stdin.read().rstrip("\r\n")
        if not password:
            raise OcirunError("--password-stdin: no password on stdin")
    if password and not password_stdin:
        click.echo("WARNING! Using --password via the CLI is insecure. Use --password-stdin.", err=True)
    if not username:
        if not sys.stdin.isatty():
            raise OcirunError("cannot prompt for a username: stdin is not a terminal (use -u)")
        username = click.prompt("Username")
    if not password:
        if not sys.stdin.isatty():
            raise OcirunError("cannot prompt for a password: stdin is not a terminal (use --password-stdin)")
        password = click.prompt("Password", hide_input=True)
    path = check_and_store(_server(server), username, password)
    click.echo(f"Login Succeeded (credentials stored in {path})")


@click.command("logout", cls=DockerCommand, context_settings=CONTEXT)
@click.argument("server", required=False)
def logout(server: str | None) -> None:
    """Log out from a registry (Docker Hub when SERVER is not given)."""
    from registry import auth

    name = _server(server)
    if auth.logout(name):
        click.echo(f"Removing login credentials for {name}")
    else:
        click.echo(f"Not logged in to {name}")


# -- prune / df ---------------------------------------------------------------------------------------


@click.command("prune", cls=DockerCommand, context_settings=CONTEXT)
@click.option("-a", "--all", "all_", is_flag=True, help="Remove all images not used by a container, not just dangling ones.")
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation.")
@click.pass_context
def prune(ctx: click.Context, all_: bool, force: bool) -> None:
    """Remove unused images, blobs and leftovers of interrupted pulls."""
    store = image_store(ctx)
    if not force and sys.stdin.isatty():
        what = "all images without at least one container" if all_ else "all dangling images"
        if not click.confirm(f"WARNING! This will remove {what}.\nAre you sure you want to continue?"):
            return
    report = store.prune(all_images=all_)
    if report.deleted:
        click.echo("Deleted Images:")
        for image_id in report.deleted:
            click.echo(f"deleted: {image_id}")
        click.echo()
    for note in report.notes:
        click.echo(note)
    click.echo(f"Total reclaimed space: {human_size(report.reclaimed)}")


@click.command("df", cls=DockerCommand, context_settings=CONTEXT)
@click.option("-v", "--verbose", is_flag=True, help="Show detailed information on space usage.")
@click.pass_context
def df(ctx: click.Context, verbose: bool) -> None:
    """Show ocirun disk usage."""
    store = image_store(ctx)
    usage = store.df()
    rows = [["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]]
    for kind, u in usage.items():
        pct = f" ({100 * u['reclaimable'] // u['size']}%)" if u["size"] else ""
        rows.append([kind, str(u["total"]), str(u["active"]), human_size(u["size"]), human_size(u["reclaimable"]) + pct])
    click.echo(table(rows))
    if verbose:
        click.echo(f"\nStore: {store.root}\n\nImages space usage:\n")
        usage_rows = [["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE", "CONTAINERS"]]
        for repo, tag, rec, _dig in store.table_rows():
            usage_rows.append([repo, tag, rec.short_id, human_ago(rec.created), human_size(rec.size),
                          str(len(store.containers_using(rec.id)))])
        click.echo(table(usage_rows))


@click.command("check", cls=DockerCommand, context_settings=CONTEXT)
@click.option("--repair", is_flag=True, help="Repair what is damaged (rebuild, or set aside; never delete a container's files).")
@click.pass_context
def check(ctx: click.Context, repair: bool) -> int:
    """Check the store for damaged records, blobs and fake-root databases.

    Site stores (OCIRUN_ADDITIONAL_STORES) are checked too, but only their owner repairs them.
    Exit status 0 when nothing is damaged (or all of it was repaired), 1 otherwise.
    """
    from layers.check import check_site_stores, check_store

    store = image_store(ctx)
    findings = check_store(store, repair=repair) + check_site_stores(store)
    for f in findings:
        click.echo(f.line())
    if not findings:
        click.echo("no damage found")
    return 0 if all(f.repaired for f in findings) else 1


# -- groups ---------------------------------------------------------------------------------------------


def _add_lifecycle(group: click.Group, names: dict[str, str]) -> None:
    """docker's `image tag|push|...` are the commands of ocirun.cli.lifecycle_cmds."""
    from ocirun.cli import lifecycle_cmds

    for name, attr in names.items():
        group.add_command(getattr(lifecycle_cmds, attr), name)


@click.group("image", cls=DockerGroup, context_settings=CONTEXT)
def image() -> None:
    """Manage images.

    \b
    Usage:  ocirun image COMMAND
    """


for _name, _command in {"ls": images, "list": images, "rm": rmi, "pull": pull, "inspect": inspect,
                        "load": load, "prune": prune}.items():
    image.add_command(_command, _name)
_add_lifecycle(image, {"tag": "tag", "push": "push", "history": "history", "save": "save"})


@click.group("system", cls=DockerGroup, context_settings=CONTEXT)
def system() -> None:
    """Manage ocirun's store.

    \b
    Usage:  ocirun system COMMAND
    """


for _name, _command in {"df": df, "check": check, "prune": prune}.items():
    system.add_command(_command, _name)
