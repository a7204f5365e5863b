"""The runner's part of `ocirun system check`: containers and their fake-root databases.

  containers/<id>/    a container whose config.json is unreadable is moved, whole, to
                      lost+found/ (the user's files are never deleted)
  fake-root database  the rows sqlite can still read are copied into a new database;
                      the damaged file is kept beside it as *.damaged

The image store (layers.check) reaches this through its ContainerIndex.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path

from layers.check import Finding

FAKEROOT_DB_SUFFIX = ".ocirun-fakeroot.db"  # beside a rootfs (ocirun proot -0)
CONTAINER_DB = "fakeroot.db"  # containers/<id>/fakeroot.db


def check_containers(containers_dir: Path, repair: bool) -> list[Finding]:
    """Unreadable container configurations and damaged fake-root databases under `containers_dir`."""
    out: list[Finding] = []
    if not containers_dir.is_dir():
        return out
    lost = containers_dir.parent / "lost+found"
    for entry in sorted(os.scandir(containers_dir), key=lambda e: e.name):
        if entry.name.startswith(".") or not entry.is_dir():
            continue
        try:
            doc = json.loads(Path(entry.path, "config.json").read_bytes())
            if not isinstance(doc, dict) or not isinstance(doc.get("Plan"), dict) or "Id" not in doc:
                raise ValueError("not a container configuration")
        except (OSError, ValueError) as exc:
            f = Finding(f"container {entry.name[:12]}", f"config.json is unreadable ({exc})",
                        f"move it, with its files, to {lost}")
            if repair:
                lost.mkdir(exist_ok=True)
                dest = lost / f"{entry.name}-{int(time.time())}"
                os.replace(entry.path, dest)
                f.action, f.repaired = f"moved, with its files, to {dest}", True
            out.append(f)
            continue
        out += _check_fakeroot_dbs(Path(entry.path), repair)
    return out


def _check_fakeroot_dbs(cdir: Path, repair: bool) -> list[Finding]:
    out = []
    for db in [*cdir.glob(CONTAINER_DB), *cdir.glob("*" + FAKEROOT_DB_SUFFIX)]:
        problem = fakeroot_db_problem(db)
        if problem is None:
            continue
        f = Finding(str(db), f"fake-root database is damaged ({problem})",
                    "copy the rows that can be read into a new database, keep the old one as *.damaged")
        if repair:
            n = salvage_fakeroot_db(db)
            f.action, f.repaired = f"{n} record(s) saved into a new database, the old one kept as {db.name}.damaged", True
        out.append(f)
    return out


def fakeroot_db_problem(db: Path) -> str | None:
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            rows = conn.execute("PRAGMA integrity_check").fetchall()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return str(exc)
    return None if rows == [("ok",)] else "; ".join(r[0] for r in rows[:3])


def salvage_fakeroot_db(db: Path) -> int:
    """Move the damaged database aside and copy what is readable into a new one."""
    damaged_copy = db.with_name(db.name + ".damaged")
    os.replace(db, damaged_copy)
    for suffix in ("-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    rows: list[tuple] = []
    try:
        old = sqlite3.connect(f"file:{damaged_copy}?mode=ro", uri=True)
        try:
            schema = [r[0] for r in old.execute("SELECT sql FROM sqlite_master WHERE type='table' AND sql IS NOT NULL")]
            tables = [r[0] for r in old.execute("SELECT name FROM sqlite_master WHERE type='table'")]
            rows = [(t, r) for t in tables for r in _readable_rows(old, t)]
        finally:
            old.close()
    except sqlite3.Error:
        return 0
    new = sqlite3.connect(db)
    try:
        for sql in schema:
            new.execute(sql)
        for table, row in rows:
            new.execute(f'INSERT OR IGNORE INTO "{table}" VALUES ({",".join("?" * len(row))})', row)
        new.commit()
    finally:
        new.close()
    return len(rows)


def _readable_rows(conn: sqlite3.Connection, table: str) -> list[tuple]:
    out = []
    try:
        for row in conn.execute(f'SELECT * FROM "{table}"'):
            out.append(row)
    except sqlite3.Error:
        pass  # the rest of the table is unreadable
    return out
