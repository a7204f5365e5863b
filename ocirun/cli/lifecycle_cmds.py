"""The image lifecycle around the store: tag, push (and history, save, cp, commit).

Each command takes docker's arguments and prints what docker prints; what differs
from docker is listed in the README's "Image lifecycle" section.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from ocirun.cli import DockerCommand
from ocirun.errors import OcirunError

CONTEXT = {"help_option_names": ["-h", "--help"]}


def _store(ctx: click.Context):
    from layers.store import Store

    obj = ctx.find_root().obj or {}
    return Store.open(obj.get("root"))


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
    store = _store(ctx)
    store.add_tag(target, _image(store, source))


# -- push ----------------------------------------------------------------------------------------


def _local_image(store: Any, rec: Any, ref: Any) -> Any:
    """The stored manifest and the blobs it names, plus repositories to mount them from."""
    from registry.client import manifest_media_type
    from registry.push import LocalImage
    from registry.reference import parse_image_reference
    from registry.types import Descriptor, iter_layers

    data = (rec.path / "manifest.json").read_bytes()
    media_type = manifest_media_type(data, "", rec.short_id)
    manifest = json.loads(data)
    sources = []
    for name in rec.repo_tags + rec.repo_digests:
        try:
            other = parse_image_reference(name)
        except OcirunError:
            continue
        if other.registry == ref.registry and other.repository != ref.repository:
            sources.append(other.repository)
    return LocalImage(data, media_type, Descriptor.from_json(manifest.get("config") or {}),
                      list(iter_layers(manifest)), tuple(dict.fromkeys(sources)))


def _push_one(store: Any, ref: Any, quiet: bool) -> None:
    from layers.store import familiar
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
    from layers.store import familiar

    store = _store(ctx)
    ref = _reference(name, "push")
    refs = [ref]
    if all_tags:
        if ":" in name.rsplit("/", 1)[-1]:
            raise OcirunError("tag can't be used with --all-tags/-a")
        from dataclasses import replace

        tags = sorted({t for repo, t, _rec, _d in store.table_rows() if repo == familiar(ref.name) and t != "<none>"})
        if not tags:
            raise OcirunError(f"An image does not exist locally with the tag: {ref.familiar.rsplit(':', 1)[0]}")
        refs = [replace(ref, tag=t) for t in tags]
    for r in refs:
        _push_one(store, r, quiet)
    if quiet:
        click.echo(str(ref.name if all_tags else ref))
