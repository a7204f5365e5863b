"""Built-in engine extensions: one module (or folder) each, one line each in EXTENSIONS.
Helpers several of them use are in shared/; the interface is ocirun/engine/extension.py.

`build` turns PRoot-style options into the extension list (used by `ocirun proot`
through ocirun/cli/proot_ext.py); `for_runner` does the same for the docker-like
runner. Order matters: copy_up first (the others see the container's private
inode), link2symlink next (it points later extensions at the store file behind an
emulated link), then kompat (it keeps sethostname's name before fake_id0 fakes the
call's success), fake_id0, portmap.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from ocirun.errors import OcirunError
from ocirun.util.fmt import int_pair
from ocirun.util.imports import import_module

TYPE_CHECKING = False  # typing's, without importing typing (start-up time)
if TYPE_CHECKING:
    from ocirun.engine.cow import ContainerTree
    from ocirun.engine.extension import Extension

EXTENSIONS: dict[str, str] = {
    "copy_up": "ocirun.engine.extensions.copy_up:CopyUp",
    "link2symlink": "ocirun.engine.extensions.link2symlink:Link2Symlink",
    "fake_id0": "ocirun.engine.extensions.fake_id0:FakeId0",
    "kompat": "ocirun.engine.extensions.kompat:Kompat",
    "portmap": "ocirun.engine.extensions.portmap:PortMap",
    "sysvipc": "ocirun.engine.extensions.sysvipc:SysvIpc",
    "ptrace": "ocirun.engine.extensions.ptrace:PtraceEmulation",
}
ALWAYS_ON = ("ptrace",)  # every tracer loads these


def load(name: str) -> type[Extension]:
    """The extension class registered as `name`."""
    module, _, cls = EXTENSIONS[name].partition(":")
    return getattr(import_module(module), cls)


def always_on() -> list[Extension]:
    """The extensions every run has: the guest's own ptrace (strace, gdb) is emulated."""
    return [load(name)() for name in ALWAYS_ON]


def parse_ids(spec: str) -> tuple[int, int]:
    """`-i uid:gid` (PRoot also accepts a lone uid: gid = uid)."""
    try:
        uid, gid = int_pair(spec, ":")
    except ValueError:
        raise OcirunError(f"-i/--change-id: {spec!r} is not of the form uid:gid") from None
    if not (0 <= uid < 2**32 - 1 and 0 <= gid < 2**32 - 1):
        raise OcirunError(f"-i/--change-id: {spec!r}: ids out of range")
    return uid, gid


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
    sysvipc: bool | None = None,
) -> list[Extension]:
    """Extensions for these options. link2symlink None = automatic: on when
    OCIRUN_LINK2SYMLINK=1 or when a probe link() in the rootfs is refused; sysvipc
    likewise (OCIRUN_SYSVIPC, else a probe shmget() in the tracer).
    file_owner: who the real user's files appear to belong to (default: `ids`)."""
    exts: list[Extension] = []
    if _wanted("OCIRUN_LINK2SYMLINK", link2symlink, lambda: _link2symlink_needed(rootfs)):
        exts.append(load("link2symlink")())
    if kernel_release:
        exts.append(load("kompat")(kernel_release))
    if ids is not None:
        exts.append(load("fake_id0")(ids[0], ids[1], db_path=fakeroot_db, ownership_file=ownership,
                                     file_owner=file_owner))
    if ports or netcoop:
        exts.append(load("portmap")(ports or {}, netcoop))
    if _wanted("OCIRUN_SYSVIPC", sysvipc, _sysvipc_needed):
        exts.append(load("sysvipc")(os.environ.get("PROOT_TMP_DIR") or None))
    return exts


def _wanted(env_name: str, option: bool | None, probe: Callable[[], bool]) -> bool:
    """An automatic extension: the option if given, else the environment variable
    (1/0; empty or "auto": ask), else the probe."""
    if option is not None:
        return option
    env = os.environ.get(env_name, "")
    if env not in ("", "auto"):
        return env not in ("0", "no", "false")
    return probe()


def _link2symlink_needed(rootfs: str) -> bool:
    from ocirun.engine.extensions.shared.linkprobe import link2symlink_needed

    return link2symlink_needed(rootfs)


def _sysvipc_needed() -> bool:
    from ocirun.engine.extensions.shared.ipcprobe import sysvipc_needed

    return sysvipc_needed()


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
    tree: ContainerTree | None = None,
    readonly: list[str] | None = None,
) -> list[Extension]:
    """The runner's extensions: copy-up of the container `tree` (and EROFS under the
    `readonly` host paths), the container user's ids always faked (uid 0 for root
    images), the image's files owned by root (what is not on disk comes from the
    image's ownership file), the fake-root database in the container's directory."""
    db = os.path.join(state_dir, "fakeroot.db") if state_dir else None
    return [load("copy_up")(tree, readonly)] + build(
        rootfs=rootfs,
        ids=(uid, gid),
        kernel_release=kernel_release,
        ports=dict(ports or []),
        netcoop=netcoop,
        fakeroot_db=db,
        ownership=ownership if ownership and os.path.exists(ownership) else None,
        file_owner=(0, 0),
    )
