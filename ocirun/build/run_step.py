"""RUN: a container of the runner on the state's tree, as the fake root (or USER),
its changes turned into one layer, the container removed afterwards.

The container is an ordinary one (`ocirun.run`): the same engine, copy-up tree,
fake-root database and QEMU for a foreign platform as `ocirun run`. Its name
starts with `ocirun-build-`, so a container a killed build left behind is
recognised and removed by the next build.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from layers.diff import container_changes
from layers.layerwrite import Entry
from ocirun.errors import OcirunError
from ocirun.run.containers import ContainerStore
from ocirun.run.options import RunOptions, Volume
from ocirun.run.plan import build_run_plan

NAME_PREFIX = "ocirun-build-"


class StepFailed(OcirunError):
    """A RUN command exited non-zero: the build stops with exit 1, as docker's."""


def remove_leftovers(cstore: ContainerStore) -> None:
    """Build containers of killed builds (not running any more)."""
    for c in cstore.list():
        if c.name.startswith(NAME_PREFIX) and not cstore.is_running(c):
            with contextlib.suppress(OcirunError, OSError):
                cstore.remove(c, force=True)


@contextlib.contextmanager
def run_changes(
    cstore: ContainerStore,
    config: dict[str, Any],
    image_id: str,
    rootfs: Path,
    argv: list[str],
    env: dict[str, str],
    platform: str | None,
    shown: str,
    volumes: list[Volume] | None = None,
) -> Iterator[list[Entry]]:
    """Run `argv` on `rootfs` (the tree of `config`); yields the change list (layer
    entries), whose files stay in the container until the block ends."""
    from ocirun.run.runner import start_container

    inner = config.get("config") or {}
    opts = RunOptions(
        image=image_id,
        command=list(argv),
        entrypoint="",
        env=dict(env),
        workdir=inner.get("WorkingDir") or "/",
        user=inner.get("User") or "0",
        platform=platform,
        volumes=list(volumes or []),
    )
    c = cstore.create(
        image=image_id,
        image_id=image_id,
        image_root=rootfs,
        plan_for_id=lambda cid: build_run_plan(opts, config, rootfs, cid, host_env={}),
        name=NAME_PREFIX + secrets.token_hex(6),
    )
    try:
        code = start_container(cstore, c)
        if code != 0:
            raise StepFailed(f"The command '{shown}' returned a non-zero code: {code}", 1)
        yield container_changes(c.image_root, c.rootfs, c.path)
    finally:
        with contextlib.suppress(OcirunError, OSError):
            cstore.remove(c, force=True, background=True)  # its files go while the build goes on

