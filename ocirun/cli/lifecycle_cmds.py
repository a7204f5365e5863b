"""The image lifecycle around the store: tag, push (and history, save, cp, commit).

Each command takes docker's arguments and prints what docker prints; what differs
from docker is listed in the README's "Image lifecycle" section.
"""

from __future__ import annotations

import contextlib
import json
import sys
from typing import Any

import click

from ocirun.cli.group import DockerCommand
from ocirun.cli.stores import container_store, image_store
from ocirun.errors import OcirunError
from ocirun.util.fmt import human_ago, human_size, table

CONTEXT = {"help_option_names": ["-h", "--help"]}


def _image(store: Any, ref: str) -> Any:
    rec = store.resolve(ref)
    if rec is None:
        raise OcirunError(f"No such image: {ref}")
    return rec


def _reference(text: str, what: str) -> Any:
    from registry.reference import parse_image_reference

    ref = parse_image_reference(text)
    if ref.digest:
        raise OcirunError(f"{what} {text!r}: a digest cannot be used here, give a tag")
    return ref


# -- tag -----------------------------------------------------------------------------------------


@click.command("tag", cls=DockerCommand, context_settings=CONTEXT)
@click.argument("source")
@click.argument("target")
@click.pass_context
def tag(ctx: click.Context, source: str, target: str) -> None:
    """Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE.

    \b
    Usage:  ocirun tag SOURCE_IMAGE[:TAG] TARGET_IMAGE[:TAG]
    """
    store = image_store(ctx)
    store.add_tag(target, _image(store, source))


# -- push ----------------------------------------------------------------------------------------


def _mount_sources(store: Any, ref: Any, blobs: set[str]) -> dict[str, tuple[str, ...]]:
    """For each blob, the other repositories of `ref`'s registry that stored images
    holding it are named in: the registry may let the push mount it from there."""
    from registry.reference import parse_image_reference

    out: dict[str, list[str]] = {}
    for rec in store.list_images():
        mine = blobs.intersection(rec.layers + [rec.id])
        if not mine:
            continue
        for name in rec.repo_tags + rec.repo_digests:
            try:
                other = parse_image_reference(name)
            except OcirunError:
                continue
            if other.registry == ref.registry and other.repository != ref.repository:
                for digest in mine:
                    if other.repository not in out.setdefault(digest, []):
                        out[digest].append(other.repository)
    return {d: tuple(repos) for d, repos in out.items()}


def _local_image(store: Any, rec: Any, ref: Any) -> Any:
    """The stored manifest and the blobs it names, plus repositories to mount them from."""
    from registry.client import manifest_media_type
    from registry.push import LocalImage
    from registry.types import Descriptor, iter_layers

    data = (rec.path / "manifest.json").read_bytes()
    manifest = json.loads(data)
    config, layers = Descriptor.from_json(manifest.get("config") or {}), list(iter_layers(manifest))
    sources = _mount_sources(store, ref, {config.digest, *(d.digest for d in layers)})
    return LocalImage(data, manifest_media_type(data, "", rec.short_id), config, layers, sources)


def _push_one(store: Any, ref: Any, quiet: bool) -> None:
    from layers.records import familiar
    from registry.push import push_image

    rec = store.resolve(str(ref))
    if rec is None:
        raise OcirunError(f"An image does not exist locally with the tag: {familiar(ref.name)}")
    image = _local_image(store, rec, ref)
    board = sys.stderr.isatty() and not quiet
    if not quiet:
        click.echo(f"The push refers to repository [{ref.name}]")

    def layer_done(desc: Any, status: str) -> None:
        if not board and not quiet:
            click.echo(f"{desc.digest.partition(':')[2][:12]}: {status}")

    result = push_image(image, ref, store.blobs, progress=board, on_layer=layer_done)
    store.add_repo_digest(rec, ref.name, result.digest)
    if not quiet:
        click.echo(f"{ref.tag}: digest: {result.digest} size: {result.size}")


@click.command("push", cls=DockerCommand, context_settings=CONTEXT)
@click.option("-a", "--all-tags", is_flag=True, help="Push all tags of an image to the repository.")
@click.option("-q", "--quiet", is_flag=True, help="Suppress verbose output.")
@click.argument("name")
@click.pass_context
def push(ctx: click.Context, all_tags: bool, quiet: bool, name: str) -> None:
    """Upload an image to a registry.

    \b
    Usage:  ocirun push [OPTIONS] NAME[:TAG]
    """
    from layers.records import familiar

    store = image_store(ctx)
    ref = _reference(name, "push")
    refs = [ref]
    if all_tags:
        if ":" in name.rsplit("/", 1)[-1]:
            raise OcirunError("tag can't be used with --all-tags/-a")
        from ocirun.util.records import replace

        tags = sorted({t for repo, t, _rec, _d in store.table_rows() if repo == familiar(ref.name) and t != "<none>"})
        if not tags:
            raise OcirunError(f"An image does not exist locally with the tag: {ref.familiar.rsplit(':', 1)[0]}")
        refs = [replace(ref, tag=t) for t in tags]
    for r in refs:
        _push_one(store, r, quiet)
    if quiet:
        click.echo(str(ref.name if all_tags else ref))


# -- history -------------------------------------------------------------------------------------


def _layer_size(store: Any, digest: str) -> int:
    """A layer's uncompressed size, which docker's SIZE column shows (read through once)."""
    from registry.compression import LayerReader

    with store.blobs.open(digest) as f:
        reader = LayerReader(f)
        reader.drain()
    return reader.uncompressed_size


def history_rows(store: Any, rec: Any) -> list[dict[str, Any]]:
    """The image's history, newest first: {id, created, created_by, size, comment}."""
    history = list(rec.config.get("history") or [])
    layers = list(rec.layers)
    if not history:  # an image without history: one anonymous step per layer
        history = [{} for _ in layers]
    rows, i = [], 0
    for h in history:
        size = 0
        if not h.get("empty_layer") and i < len(layers):
            size = _layer_size(store, layers[i])
            i += 1
        rows.append({"created": str(h.get("created") or ""), "created_by": str(h.get("created_by") or ""),
                     "size": size, "comment": str(h.get("comment") or ""), "id": "<missing>"})
    rows.reverse()
    if rows:
        rows[0]["id"] = rec.id
    return rows


def _ellipsis(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


@click.command("history", cls=DockerCommand, context_settings=CONTEXT)
@click.option("-H", "--human", type=bool, default=True, show_default=False, metavar="",
              help="Print sizes and dates in human readable format (default true).")
@click.option("--no-trunc", is_flag=True, help="Don't truncate output.")
@click.option("-q", "--quiet", is_flag=True, help="Only show image IDs.")
@click.argument("image")
@click.pass_context
def history(ctx: click.Context, human: bool, no_trunc: bool, quiet: bool, image: str) -> None:
    """Show the history of an image.

    \b
    Usage:  ocirun history [OPTIONS] IMAGE
    """
    store = image_store(ctx)
    rows = history_rows(store, _image(store, image))

    def ident(r: dict[str, Any]) -> str:
        if r["id"] == "<missing>" or no_trunc:
            return r["id"]
        return r["id"].partition(":")[2][:12]

    if quiet:
        click.echo("\n".join(ident(r) for r in rows))
        return
    lines = [["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"]]
    for r in rows:
        by = r["created_by"].replace("\t", " ")
        lines.append([
            ident(r),
            human_ago(r["created"]) if human else r["created"],
            by if no_trunc else _ellipsis(by, 45),
            human_size(r["size"]) if human else str(r["size"]),
            r["comment"],
        ])
    click.echo(table(lines))


# -- save ----------------------------------------------------------------------------------------


def _save_targets(store: Any, text: str) -> list[tuple[Any, str | None]]:
    """(image, name to save it under) for one argument of `save`.

    docker's rules: `name:tag` saves that tag, a bare `name` every tag of the
    repository, an image id the image without a name.
    """
    from layers.records import familiar
    from registry.reference import parse_image_reference

    try:
        ref = parse_image_reference(text)
    except OcirunError:
        ref = None
    explicit = ref is not None and (ref.digest or ":" in text.rsplit("/", 1)[-1])
    if ref is not None and not explicit:
        rows = [(rec, f"{ref.name}:{tag}") for repo, tag, rec, _d in store.table_rows()
                if repo == familiar(ref.name) and tag != "<none>"]
        if rows:
            return rows
    rec = store.resolve(text)
    if rec is None:
        raise OcirunError(f"No such image: {text}")
    named = ref is not None and explicit and not ref.digest
    return [(rec, f"{ref.name}:{ref.tag}" if named else None)]


def save_images(store: Any, refs: tuple[str, ...]) -> list[Any]:
    """The SaveImage of every image the arguments name, each once, with all its names."""
    from registry.archive_write import SaveImage
    from registry.client import manifest_media_type
    from registry.platform import Platform
    from registry.types import iter_layers

    out: dict[str, SaveImage] = {}
    for text in refs:
        for rec, name in _save_targets(store, text):
            if rec.id not in out:
                manifest = (rec.path / "manifest.json").read_bytes()
                out[rec.id] = SaveImage(
                    config=(rec.path / "config.json").read_bytes(), config_digest=rec.id,
                    manifest=manifest, manifest_digest=rec.manifest_digest,
                    media_type=manifest_media_type(manifest, "", rec.short_id),
                    layers=list(iter_layers(json.loads(manifest))),
                    diff_ids=list((rec.config.get("rootfs") or {}).get("diff_ids") or []),
                    platform=Platform.parse(rec.platform).to_json() if rec.platform else {},
                )
            if name and name not in out[rec.id].names:
                out[rec.id].names.append(name)
    return list(out.values())


@click.command("save", cls=DockerCommand, context_settings=CONTEXT)
@click.option("-o", "--output", metavar="FILE", help="Write to a file, instead of STDOUT.")
@click.option("--format", "fmt", type=click.Choice(["docker-archive", "oci-archive"]), default="docker-archive",
              show_default=True, help="Archive format: docker save's tarball, or an OCI layout in a tar.")
@click.argument("refs", nargs=-1, required=True, metavar="IMAGE [IMAGE...]")
@click.pass_context
def save(ctx: click.Context, output: str | None, fmt: str, refs: tuple[str, ...]) -> None:
    """Save one or more images to a tar archive (streamed to STDOUT by default).

    \b
    Usage:  ocirun save [OPTIONS] IMAGE [IMAGE...]
    """
    import os
    import tempfile

    from registry.save import write_archive

    if output is None and sys.stdout.isatty():
        raise OcirunError("cowardly refusing to save to a terminal. Use the -o flag or redirect")
    store = image_store(ctx)
    images = save_images(store, refs)
    if output is None:
        write_archive(images, sys.stdout.buffer, fmt, store.blobs.path, store.tmp_dir)
        sys.stdout.buffer.flush()
        return
    target = os.path.abspath(output)
    fd, tmp = tempfile.mkstemp(prefix=".ocirun-save-", dir=os.path.dirname(target))
    try:
        with os.fdopen(fd, "wb") as f:
            write_archive(images, f, fmt, store.blobs.path, store.tmp_dir)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)  # a half-written archive never has the name asked for
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask


# -- commit --------------------------------------------------------------------------------------


def _container(ctx: click.Context, ref: str) -> Any:
    return container_store(ctx).get(ref)


@click.command("commit", cls=DockerCommand, context_settings=CONTEXT)
@click.option("-a", "--author", default="", metavar="string", help='Author (e.g., "John Hannibal Smith <hannibal@a-team.com>").')
@click.option("-c", "--change", "changes", multiple=True, metavar="list",
              help="Apply Dockerfile instruction to the created image.")
@click.option("-m", "--message", default="", metavar="string", help="Commit message.")
@click.option("-p", "--pause", type=bool, default=True, metavar="",
              help="Pause container during commit (accepted; ocirun does not pause, default true).")
@click.argument("container")
@click.argument("repository", required=False, metavar="[REPOSITORY[:TAG]]")
@click.pass_context
def commit(ctx: click.Context, author: str, changes: tuple[str, ...], message: str, pause: bool, container: str,
           repository: str | None) -> None:
    """Create a new image from a container's changes.

    \b
    Usage:  ocirun commit [OPTIONS] CONTAINER [REPOSITORY[:TAG]]
    """
    from ocirun.run.commit import CommitOptions, commit_container

    store = image_store(ctx)
    c = _container(ctx, container)
    tags = [repository] if repository else []
    for t in tags:
        _reference(t, "commit")  # a bad name fails before the layer is written
    opts = CommitOptions(author=author, message=message, changes=list(changes), tags=tags)
    rec = commit_container(store, c, opts)
    click.echo(rec.id)


# -- cp ------------------------------------------------------------------------------------------


def _cp_arg(arg: str) -> tuple[str | None, str]:
    """docker's split: `NAME:PATH` names a container unless the text is a path (`/x`, `./a:b`)."""
    if arg.startswith("/") or ":" not in arg or arg.startswith("."):
        return None, arg
    name, _, path = arg.partition(":")
    return name, path or "/"


@click.command("cp", cls=DockerCommand, context_settings=CONTEXT)
@click.option("-a", "--archive", is_flag=True, help="Archive mode (copy all uid/gid information).")
@click.option("-L", "--follow-link", is_flag=True, help="Always follow symbol link in SRC_PATH.")
@click.option("-q", "--quiet", is_flag=True, help="Suppress the 'Successfully copied' line on a terminal.")
@click.argument("src", metavar="SRC")
@click.argument("dest", metavar="DEST")
@click.pass_context
def cp(ctx: click.Context, archive: bool, follow_link: bool, quiet: bool, src: str, dest: str) -> None:
    """Copy files/folders between a container and the local filesystem.

    \b
    Usage:  ocirun cp [OPTIONS] CONTAINER:SRC_PATH DEST_PATH|-
            ocirun cp [OPTIONS] SRC_PATH|- CONTAINER:DEST_PATH

    Use '-' as the source to read a tar archive from stdin and extract it to a
    directory destination in a container. Use '-' as the destination to stream a
    tar archive of a container source to stdout.
    """
    from ocirun.run.cpfiles import copy_in, copy_out

    (src_c, src_path), (dst_c, dst_path) = _cp_arg(src), _cp_arg(dest)
    if src_c and dst_c:
        raise OcirunError("copying between containers is not supported")
    if not src_c and not dst_c:
        raise OcirunError("must specify at least one container source")
    if src_c and dst_path == "-":
        if sys.stdout.isatty():
            raise OcirunError("cowardly refusing to write a tar stream to a terminal (redirect it)")
        from ocirun.run.cptar import tar_out

        size = tar_out(_container(ctx, src_c), src_path, follow_link, sys.stdout.buffer)
        sys.stdout.buffer.flush()
    elif src_c:
        size, _where = copy_out(_container(ctx, src_c), src_path, dst_path, follow_link, archive)
    elif src_path == "-":
        from ocirun.run.cptar import tar_in

        size = tar_in(_container(ctx, dst_c), sys.stdin.buffer, dst_path)
    else:
        size, _where = copy_in(_container(ctx, dst_c), src_path, dst_path, follow_link, archive)
    if not quiet and sys.stderr.isatty():
        click.echo(f"Successfully copied {human_size(size)} to {dest}", err=True)
