"""The stores a command works on (from the `ocirun --root` option), and the loop of
the commands that act on several containers."""

from __future__ import annotations

import os
from collections.abc import Callable

import click

from ocirun.errors import OcirunError
from ocirun.util.paths import store_root

TYPE_CHECKING = False  # typing's, without importing typing (start-up time)
if TYPE_CHECKING:
    from layers.store import Store
    from ocirun.run.containers import Container, ContainerStore


def root_option(ctx: click.Context) -> str | None:
    """The --root the `ocirun` group was given (None: $OCIRUN_ROOT or the default)."""
    obj = ctx.find_root().obj or {}
    return obj.get("root")


def stores(ctx: click.Context) -> tuple[Store, ContainerStore]:
    """The image store and the container store; the image store knows which images
    containers use."""
    from ocirun.run.containers import open_stores

    return open_stores(root_option(ctx))


def image_store(ctx: click.Context) -> Store:
    return stores(ctx)[0]


def container_store(ctx: click.Context) -> ContainerStore:
    """Only the container store (no image-store setup needed for ps/rm/logs)."""
    from ocirun.run.containers import ContainerStore

    root = store_root(root_option(ctx))
    if os.path.exists(root) and not os.path.isdir(root):  # else ps would list nothing, silently
        raise OcirunError(f"cannot use the store at {root}: not a directory")
    return ContainerStore(root)


def each_container(cstore: ContainerStore, refs: tuple[str, ...], action: Callable[[Container], None]) -> int:
    """Run `action` on each named container and echo its name, as docker does; a failure
    is one `ocirun: ...` line and the others still go. Returns 1 if any failed."""
    failed = 0
    for ref in refs:
        try:
            action(cstore.get(ref))
            click.echo(ref)
        except OcirunError as exc:
            click.echo(f"ocirun: {exc.message}", err=True)
            failed = 1
    return failed
