"""Random real trees and random guest paths for the oracle and cache property tests."""

from __future__ import annotations

import os
import random

NAMES = ("a", "b", "c", "dd", "e.x", "f")


def build(base: str, rng: random.Random, n_dirs: int = 12, n_files: int = 10, n_links: int = 18) -> list[str]:
    """Fill `base` (a realpath) with dirs, files and symlinks (relative, absolute, dangling, loops).

    Returns the tree's entries as paths relative to base. Absolute link targets
    point inside base, so with rootfs='/' the host kernel is an exact oracle.
    """
    dirs = [""]
    for _ in range(n_dirs):
        parent = rng.choice(dirs)
        name = rng.choice(NAMES)
        rel = f"{parent}/{name}".lstrip("/")
        if os.path.lexists(os.path.join(base, rel)):
            continue
        os.mkdir(os.path.join(base, rel))
        dirs.append(rel)
    entries = list(dirs[1:])
    for _ in range(n_files):
        rel = f"{rng.choice(dirs)}/{rng.choice(NAMES)}".lstrip("/")
        if not os.path.lexists(os.path.join(base, rel)):
            with open(os.path.join(base, rel), "w") as f:
                f.write(rel)
            entries.append(rel)
    for _ in range(n_links):
        parent = rng.choice(dirs)
        rel = f"{parent}/{rng.choice(NAMES)}".lstrip("/")
        if os.path.lexists(os.path.join(base, rel)):
            continue
        os.symlink(random_target(base, parent, entries, rng), os.path.join(base, rel))
        entries.append(rel)
    return entries


def random_target(base: str, parent: str, entries: list[str], rng: random.Random) -> str:
    """A symlink target: relative (with '..'), absolute inside base, dangling, or a loop."""
    goal = rng.choice(entries + ["", "missing", "missing/deeper"])
    roll = rng.random()
    if roll < 0.4:  # relative: climb out of parent then down to goal
        depth = parent.count("/") + 1 if parent else 0
        return "/".join([".."] * depth + ([goal] if goal else [])) or "."
    if roll < 0.8:
        return f"{base}/{goal}".rstrip("/") + rng.choice(["", "", "/"])
    if roll < 0.9:
        return rng.choice(NAMES)  # sibling: possibly itself (loop) or missing
    return f"{goal}/../{rng.choice(NAMES)}" if goal else ".."


def random_path(base: str, entries: list[str], rng: random.Random) -> str:
    """A path into the tree with '.', '..', '//' and trailing slashes sprinkled in."""
    parts = rng.choice(entries + [""]).split("/") if entries else [""]
    out: list[str] = []
    for part in parts:
        out.append(part)
        r = rng.random()
        if r < 0.1:
            out.append("..")
        elif r < 0.15:
            out.append(".")
        elif r < 0.2:
            out.append("")
    if rng.random() < 0.3:
        out.append(rng.choice(NAMES + ("missing",)))
    tail = rng.choice(["", "", "", "", "/", "/.", "/.."])
    return base + "/" + "/".join(out) + tail
