"""Built-in engine extensions: one module each, one line each in EXTENSIONS.

`build` turns PRoot-style options into the extension list (used by
`ocirun proot` through ocirun/engine/extensions/cli.py); `for_runner` does the
same for the docker-like runner. Order matters: link2symlink first (it points
later extensions at the store file behind an emulated link), then kompat (it
keeps sethostname's name before fake_id0 fakes the call's success), fake_id0, portmap.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

EXTENSIONS: dict[str, str] = {
    "link2symlink": "ocirun.engine.extensions.link2symlink:Link2Symlink",
    "fake_id0": "ocirun.engine.extensions.fake_id0:FakeId0",
    "kompat": "ocirun.engine.extensions.kompat:Kompat",
    "portmap": "ocirun.engine.extensions.portmap:PortMap",
}


def load(name: str) -> type:
    """The extension class registered as `name`."""
    module, _, cls = EXTENSIONS[name].partition(":")
    return getattr(importlib.import_module(module), cls)


def build(
    *,
    rootfs: str,
    ids: tuple[int, int] | None = None,
    kernel_release: str | None = None,
    ports: dict[int, int] | None = None,
    netcoop: bool = False,
    link2symlink: bool | None = None,
    fakeroot_db: str | None = None,
    ownership: str | None = None,
    file_owner: tuple[int, int] | None = None,
) -> list[Any]:
    """Extensions for these options. link2symlink None = automatic: on when
    OCIRUN_LINK2SYMLINK=1 or when a probe link() in the rootfs is refused.
    file_owner: who the real user's files appear to belong to (default: `ids`)."""
    exts: list[Any] = []
    if link2symlink is None:
        env = os.environ.get("OCIRUN_LINK2SYMLINK", "")
        if env not in ("", "auto"):
            link2symlink = env not in ("0", "no", "false")
        else:
            from ocirun.engine.extensions.link2symlink import link2symlink_needed

            link2symlink = link2symlink_needed(rootfs)
    if link2symlink:
        exts.append(load("link2symlink")())
    if kernel_release:
        exts.append(load("kompat")(kernel_release))
    if ids is not None:
        exts.append(load("fake_id0")(ids[0], ids[1], db_path=fakeroot_db, ownership_file=ownership,
                                     file_owner=file_owner))
    if ports or netcoop:
        exts.append(load("portmap")(ports or {}, netcoop))
    return exts


def for_runner(
    *,
    uid: int,
    gid: int,
    kernel_release: str | None = None,
    ports: list[tuple[int, int]] | None = None,
    netcoop: bool = False,
    state_dir: str | None = None,
    rootfs: str,
    ownership: str | None = None,
) -> list[Any]:
    """The runner's extensions: the container user's ids are always faked (uid 0 for
    root images), the image's files appear owned by root (what is not on disk comes
    from the image's ownership file), the fake-root database lives in the container's
    directory."""
    db = os.path.join(state_dir, "fakeroot.db") if state_dir else None
    return build(
        rootfs=rootfs,
        ids=(uid, gid),
        kernel_release=kernel_release,
        ports=dict(ports or []),
        netcoop=netcoop,
        fakeroot_db=db,
        ownership=ownership if ownership and os.path.exists(ownership) else None,
        file_owner=(0, 0),
    )
