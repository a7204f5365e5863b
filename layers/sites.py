"""Site-wide, read-only image stores searched after the user's own (README "On a cluster").

An administrator pulls images once into a store on the shared filesystem
(`ocirun --root /shared/ocirun pull ...`); users list it in OCIRUN_ADDITIONAL_STORES
(PATH[:PATH...]) or in the config file's `"additionalimagestores"` (podman's name for
the same thing); the environment wins. Those stores are only read: no lock is taken
and nothing is written there. A container of a site image lives in the user's store,
as do its fake-root records; its tree links to (or, across filesystems and owners,
copies from) the site image's files, which copy-up keeps unchanged.
"""

from __future__ import annotations

import os
from pathlib import Path

TYPE_CHECKING = False  # typing's, without importing typing (start-up time)
if TYPE_CHECKING:
    from typing import Any

ENV = "OCIRUN_ADDITIONAL_STORES"
CONFIG_KEY = "additionalimagestores"


def additional_store_paths(env: dict[str, str] | None = None) -> list[Path]:
    """The configured site stores, in order, absolute, without duplicates."""
    env = dict(os.environ) if env is None else env
    if ENV in env:
        items = env[ENV].split(":")
    else:
        from registry.config import read_config_file

        value = read_config_file().get(CONFIG_KEY) or []
        items = [value] if isinstance(value, str) else [str(v) for v in value]
    out: list[Path] = []
    for item in items:
        if item.strip():
            path = Path(item.strip()).absolute()
            if path not in out:
                out.append(path)
    return out


def find_image(store: Any, ref: str, platform: str | None = None) -> Any:
    """The image `ref` in the user's store, else in the first site store that has it."""
    record = store.resolve(ref, platform)
    if record is not None:
        return record
    for site in store.additional:
        if site.images_dir.is_dir():
            record = site.resolve(ref, platform)
            if record is not None:
                return record
    return None


def all_table_rows(store: Any) -> list[tuple[str, str, Any, str]]:
    """`ocirun images` rows: the user's images, then each site store's (record.store says whose)."""
    rows = list(store.table_rows())
    for site in store.additional:
        if site.images_dir.is_dir():
            rows += site.table_rows()
    return rows


def is_site_record(store: Any, record: Any) -> bool:
    """True when `record` comes from one of the site stores, not from the user's."""
    return record.store is not None and Path(record.store) != store.root
