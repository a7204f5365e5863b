"""Where the store lives: one root holds images (layers.store) and containers (ocirun.run)."""

from __future__ import annotations

import os
from pathlib import Path


def default_root() -> Path:
    """$XDG_DATA_HOME/ocirun, i.e. ~/.local/share/ocirun by default."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "ocirun"


def store_root(option: str | os.PathLike[str] | None = None) -> Path:
    """The store root: `option` (the --root flag), else $OCIRUN_ROOT, else default_root()."""
    return Path(option or os.environ.get("OCIRUN_ROOT") or default_root())
