"""The fake root's memory: what `-0`/`-i` guests did that the kernel could not do.

PRoot's `-0` forgets every chown the moment it returns success. Like
fakeroot's state file, this database remembers, per guest root filesystem:
the owner the guest gave a file, mode bits the kernel refused (or that the
engine widened so the real user keeps access), and device nodes made with
mknod (a regular placeholder file on disk, its type and rdev here).

Records are keyed by the inode (st_dev, st_ino), so renames and hard links
follow for free; the birth time (statx) tells a reused inode number from the
file that was recorded, and the last known rootfs-relative path lets a copied
tree (new inode numbers) find its records again when the database is opened.
Deleting the last link forgets the record.

Several engines may run on one rootfs at once: sqlite in WAL mode, short
transactions, and an in-memory cache that is reloaded whenever another
connection has committed (PRAGMA data_version). That pragma costs ~20 us and
even a stat of the WAL file ~10 us on these VMs, too much for every guest
stat: lookups look for other engines' commits at most every 50 ms (the WAL
file's (mtime, size, inode) first, the pragma when it changed or every second).
Our own writes update the cache at once. The compiled fast path answers stats from a
mirror of the cache (RecordMirror: every change of the cache is pushed to it, and it
sends a stat to Python once the next look is due).
"""

from __future__ import annotations

import ctypes
import os
import pwd
import sqlite3
import stat as statmod
import time
from collections.abc import Callable, Iterable

from ocirun.engine.extensions.shared import statbuf
from ocirun.errors import OcirunError
from ocirun.util.linux import AT_EMPTY_PATH, AT_FDCWD, AT_SYMLINK_NOFOLLOW
from ocirun.util.records import dataclass, replace

TYPE_CHECKING = False  # typing's, without importing typing (start-up time)
if TYPE_CHECKING:
    from typing import Protocol
else:
    Protocol = object  # typing's Protocol matters to type checkers only (start-up time)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS inodes (
    dev   INTEGER NOT NULL,
    ino   INTEGER NOT NULL,
    btime INTEGER,          -- birth time in ns (NULL: filesystem does not say)
    path  TEXT,             -- last known path relative to the rootfs
    uid   INTEGER,          -- owner the guest sees (NULL: as on disk)
    gid   INTEGER,
    mode  INTEGER,          -- full st_mode the guest sees (NULL: as on disk)
    rdev  INTEGER,          -- device number of a mknod'ed node
    PRIMARY KEY (dev, ino)
);
CREATE INDEX IF NOT EXISTS inodes_path ON inodes(path);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
"""

DB_ENV = "OCIRUN_FAKEROOT_DB"
POLL_INTERVAL = 0.05  # seconds between looks for other engines' commits


@dataclass(frozen=True)
class Record:
    dev: int
    ino: int
    btime: int | None
    path: str | None
    uid: int | None
    gid: int | None
    mode: int | None
    rdev: int | None

    @property
    def empty(self) -> bool:
        return self.uid is None and self.gid is None and self.mode is None and self.rdev is None


class RecordMirror(Protocol):
    """A copy of FakeRootDB's cache elsewhere (the compiled fast path: fake_id0/fast.py)."""

    def put(self, key: tuple[int, int], rec: Record | None) -> None:
        """The record of inode `key` is now `rec` (None: it has none)."""

    def reload(self, db: FakeRootDB) -> None:
        """Every record may have changed: copy them all again."""

    def until(self, deadline: float) -> None:
        """No look for other engines' commits is due before `deadline` (time.monotonic)."""


# ---- birth time through statx(2): os.stat does not return it on Linux ---------------------

# (the process's own libc, as tables.py: ctypes.util.find_library ran ldconfig, ~6 ms a start)
_libc = ctypes.CDLL(None, use_errno=True)


def btime_ns(path: str | None = None, *, fd: int | None = None, follow: bool = False) -> int | None:
    """Birth time of a file in ns, or None where the filesystem does not record one."""
    buf = ctypes.create_string_buffer(statbuf.STATX_SIZE)
    if fd is not None:
        rc = _libc.statx(fd, b"", AT_EMPTY_PATH, statbuf.STATX_BTIME, buf)
    else:
        flags = 0 if follow else AT_SYMLINK_NOFOLLOW
        rc = _libc.statx(AT_FDCWD, os.fsencode(path), flags, statbuf.STATX_BTIME, buf)
    if rc != 0:
        return None
    return statbuf.parse_statx(buf.raw).btime_ns


def default_db_path(rootfs: str) -> str:
    """Where the database of `rootfs` lives: beside it, or in the user's state dir.

    `<parent>/.<name>.ocirun-fakeroot.db` keeps the state with the tree (a
    container directory, a copied image) without being visible in the guest.
    When the parent is not writable (e.g. rootfs "/"), the per-user state dir
    holds one file per rootfs path. OCIRUN_FAKEROOT_DB overrides both.
    """
    if os.environ.get(DB_ENV):
        return os.environ[DB_ENV]
    real = os.path.realpath(rootfs)
    parent, name = os.path.split(real.rstrip("/"))
    if name and os.access(parent, os.W_OK | os.X_OK):
        return os.path.join(parent, f".{name}.ocirun-fakeroot.db")
    return state_db_path(real)


def state_db_path(rootfs: str) -> str:
    """The per-user fallback: $XDG_STATE_HOME (or the user's real home, not $HOME,
    which the guest's environment may have changed)/ocirun/fakeroot/<hash>.db."""
    state = os.environ.get("XDG_STATE_HOME")
    if not state:
        try:
            home = pwd.getpwuid(os.getuid()).pw_dir
        except KeyError:
            home = os.path.expanduser("~")
        state = os.path.join(home, ".local", "state")
    import hashlib  # (only for the default path: a run's start need not load OpenSSL)

    digest = hashlib.sha256(os.path.realpath(rootfs).encode()).hexdigest()[:16]
    return os.path.join(state, "ocirun", "fakeroot", f"{digest}.db")


def open_db(rootfs: str, path: str | None = None) -> tuple[FakeRootDB, str | None]:
    """The rootfs' database, trying the usual places in turn; an in-memory one (nothing
    remembered after the run) if none can be written. Returns (db, warning or None)."""
    candidates = [path] if path else [default_db_path(rootfs), state_db_path(rootfs)]
    errors = []
    for candidate in dict.fromkeys(candidates):
        try:
            return FakeRootDB(candidate, rootfs), None
        except (OSError, sqlite3.Error) as exc:
            if _is_corrupt(exc):  # another place would silently forget every owner
                raise OcirunError(
                    f"the fake-root database {candidate} is damaged ({exc}): run 'ocirun system check "
                    "--repair' (a container's), or move the file away (its owners and modes are lost)"
                ) from None
            errors.append(f"{candidate}: {exc}")
    return FakeRootDB(":memory:", rootfs), (
        "fake-root state cannot be saved (" + "; ".join(errors) + "): ownership changes "
        "last only for this run")


def _while_busy(step: Callable[[], None], seconds: float = 30.0) -> None:
    """Run `step`, again while another engine holds the database (SQLITE_BUSY/LOCKED).

    Two engines opening a new database at once race for the switch to WAL mode, which
    sqlite does not wait for; giving up there made open_db fall back to another file,
    whose owners the other engines never saw."""
    deadline = time.monotonic() + seconds
    delay = 0.005
    while True:
        try:
            step()
            return
        except sqlite3.OperationalError as exc:
            busy = getattr(exc, "sqlite_errorname", "").startswith(("SQLITE_BUSY", "SQLITE_LOCKED"))
            if not busy or time.monotonic() > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


def _is_corrupt(exc: Exception) -> bool:
    """sqlite's 'file is not a database' / 'database disk image is malformed'."""
    return getattr(exc, "sqlite_errorname", "") in ("SQLITE_CORRUPT", "SQLITE_NOTADB")


class FakeRootDB:
    """Persistent per-rootfs records, with a read cache for the stat hot path."""

    def __init__(self, path: str, rootfs: str):
        self.path = path
        self.rootfs = os.path.realpath(rootfs)
        if path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self._conn = sqlite3.connect(path, timeout=30, isolation_level=None)
        _while_busy(self._setup)
        self._cache: dict[tuple[int, int], Record] = {}
        # Files outside the rootfs (bindings: /tmp, /home...) are remembered for this
        # run only: their inode numbers are reused too freely to be kept.
        self._volatile: dict[tuple[int, int], Record] = {}
        self._version = -1
        self._wal = path + "-wal"
        self._wal_sig: tuple | None = None
        self._checked = 0.0
        self._polled = 0.0
        self.mirror: RecordMirror | None = None  # set by fake_id0/fast.py
        self._reload()

    def _setup(self) -> None:
        """The schema, the rootfs' identity, WAL mode: idempotent, so it may be retried.

        A new database (every container has one) gets its schema before the switch to
        WAL and without fdatasync: in WAL mode the schema's pages waited in the WAL for
        the checkpoint at close, and the two made 8 fdatasyncs of every `run --rm`
        (5-40 ms on these VMs). What a crash could lose of it is made again here at the
        next open; the records that follow are written as before (WAL, synchronous=NORMAL)."""
        self._conn.execute("PRAGMA synchronous=OFF")
        self._conn.executescript(_SCHEMA)
        root_st = os.stat(self.rootfs)
        self._conn.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('root', ?)",
            (f"{root_st.st_dev}:{root_st.st_ino}",),
        )
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")

    # ---- cache --------------------------------------------------------------

    def _reload(self) -> None:
        rows = self._conn.execute(
            "SELECT dev, ino, btime, path, uid, gid, mode, rdev FROM inodes"
        ).fetchall()
        self._cache = {(r[0], r[1]): Record(*r) for r in rows}
        self._paths: set[str] = set()
        self._dirs: set[str] = set()
        for rec in self._cache.values():
            self._index(rec)
        self._version = self._data_version()
        if self.mirror is not None:
            self.mirror.reload(self)

    def _mirror_key(self, key: tuple[int, int]) -> None:
        """Tell the mirror what get() answers for `key` now."""
        if self.mirror is not None:
            self.mirror.put(key, self._cache.get(key) or self._volatile.get(key))

    def _data_version(self) -> int:
        return self._conn.execute("PRAGMA data_version").fetchone()[0]

    def _index(self, rec: Record) -> None:
        """Paths with records, and every directory above them: lets rename/unlink hooks
        skip the (many) operations that cannot concern a record without a syscall."""
        if rec.path:
            self._paths.add(rec.path)
            parts = rec.path.split("/")
            for i in range(1, len(parts)):
                self._dirs.add("/".join(parts[:i]))

    def concerns(self, host_path: str) -> bool:
        """Might a rename/unlink of `host_path` touch a record (the path or below it)?"""
        if self._volatile:
            return True
        self._fresh()
        rel = self.rel(host_path)
        if rel is None:
            return False
        rel = os.path.normpath(rel)
        return rel in self._paths or rel in self._dirs or rel == "."

    def _wal_signature(self) -> tuple | None:
        try:
            st = os.stat(self._wal)
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size, st.st_ino

    def _fresh(self, force: bool = False) -> None:
        """Reload the cache if another connection committed."""
        now = time.monotonic()
        if not force and now - self._polled < POLL_INTERVAL:
            return
        self._polled = now
        if self.mirror is not None:
            self.mirror.until(now + POLL_INTERVAL)
        sig = self._wal_signature()
        if not force and sig == self._wal_sig and now - self._checked < 1.0:
            return
        self._wal_sig, self._checked = sig, now
        if self._data_version() != self._version:
            self._reload()

    def __len__(self) -> int:
        self._fresh(force=True)
        return len(self._cache)

    def get(self, dev: int, ino: int) -> Record | None:
        """The record of an inode (cached; sees other engines' commits)."""
        self._fresh()
        rec = self._cache.get((dev, ino))
        if rec is None and self._volatile:
            rec = self._volatile.get((dev, ino))
        return rec

    def _set_volatile(self, st: os.stat_result, **fields: int | None) -> None:
        key = (st.st_dev, st.st_ino)
        old = self._volatile.get(key) or Record(st.st_dev, st.st_ino, None, None, None, None,
                                                 None, None)
        new = replace(old, **fields)
        if new.empty:
            self._volatile.pop(key, None)
        else:
            self._volatile[key] = new
        self._mirror_key(key)

    def _outside(self, host_path: str | None) -> bool:
        return host_path is None or self.rel(host_path) is None

    def any(self) -> bool:
        """Are there records at all (cheap: for the hot path)?"""
        self._fresh()
        return bool(self._cache) or bool(self._volatile)

    def set_mirror(self, mirror: RecordMirror | None) -> None:
        """Keep `mirror` a copy of the cache from now on (None: no mirror)."""
        self.mirror = mirror
        if mirror is not None:
            mirror.reload(self)
            mirror.until(self._polled + POLL_INTERVAL)

    def known(self) -> dict[tuple[int, int], Record]:
        """Every record get() answers with now, without a look for other engines' commits."""
        return {**self._volatile, **self._cache}

    def records(self) -> list[Record]:
        self._fresh(force=True)
        return list(self._cache.values())

    # ---- writes -------------------------------------------------------------

    def rel(self, host_path: str) -> str | None:
        """Rootfs-relative form of a host path, or None outside the rootfs."""
        if host_path == self.rootfs:
            return "."
        prefix = self.rootfs.rstrip("/") + "/"
        if host_path.startswith(prefix):
            return host_path[len(prefix) :]
        return None

    def _write(self, key: tuple[int, int], sql: str, params: tuple) -> None:
        """One short write transaction about one inode, then refresh just that cache entry
        (or everything, if another engine committed since we last looked)."""
        with self._conn:
            self._conn.execute("BEGIN IMMEDIATE")
            others = self._data_version() != self._version
            self._conn.execute(sql, params)
            self._conn.execute(
                "DELETE FROM inodes WHERE dev=? AND ino=? AND uid IS NULL AND gid IS NULL"
                " AND mode IS NULL AND rdev IS NULL",
                key,
            )
        if others:
            self._reload()
            return
        row = self._conn.execute(
            "SELECT dev, ino, btime, path, uid, gid, mode, rdev FROM inodes WHERE dev=? AND ino=?",
            key,
        ).fetchone()
        if row is None:
            self._cache.pop(key, None)  # (a stale path left in the index only costs a look)
        else:
            self._cache[key] = rec = Record(*row)
            self._index(rec)
        self._mirror_key(key)

    def _key(self, st: os.stat_result, host_path: str | None) -> tuple:
        btime = btime_ns(host_path) if host_path is not None else None
        rel = self.rel(host_path) if host_path is not None else None
        return st.st_dev, st.st_ino, btime, rel

    def set_owner(
        self, st: os.stat_result, host_path: str | None, uid: int | None, gid: int | None
    ) -> None:
        """Remember the owner the guest gave the inode `st` (None clears that half)."""
        self._upsert(st, host_path, {"uid": uid, "gid": gid})

    def set_mode(self, st: os.stat_result, host_path: str | None, mode: int | None) -> None:
        """Remember the st_mode the guest sees (None: the disk's mode is right)."""
        self._upsert(st, host_path, {"mode": mode})

    def set_node(self, st: os.stat_result, host_path: str | None, mode: int, rdev: int) -> None:
        """A device node the guest made: the placeholder `st` stands for (mode, rdev)."""
        self._upsert(st, host_path, {"mode": mode, "rdev": rdev, "uid": None, "gid": None}, new_file=True)

    def _upsert(self, st: os.stat_result, host_path: str | None, fields: dict[str, int | None],
                new_file: bool = False) -> None:
        """Set `fields` of the record of inode `st`, made if missing. The remembered
        birth time and path are kept when this call does not know them, unless the
        file is new (a node the guest made replaces whatever was there)."""
        if self._outside(host_path):
            self._set_volatile(st, **fields)
            return
        dev, ino, btime, rel = self._key(st, host_path)
        columns = ", ".join(fields)
        updates = ", ".join(f"{c}=excluded.{c}" for c in fields)
        if new_file:
            keep = "btime=excluded.btime, path=excluded.path"
        else:
            keep = "btime=COALESCE(excluded.btime, btime), path=COALESCE(excluded.path, path)"
        self._write(
            (dev, ino),
            f"INSERT INTO inodes (dev, ino, btime, path, {columns}) VALUES (?,?,?,?{',?' * len(fields)})"
            f" ON CONFLICT(dev, ino) DO UPDATE SET {updates}, {keep}",
            (dev, ino, btime, rel, *fields.values()),
        )

    def forget(self, dev: int, ino: int) -> None:
        """The inode is gone (last link removed)."""
        if self._volatile.pop((dev, ino), None) is not None:
            self._mirror_key((dev, ino))
        if (dev, ino) in self._cache or self._data_version() != self._version:
            self._write((dev, ino), "DELETE FROM inodes WHERE dev=? AND ino=?", (dev, ino))

    def renamed(self, old_host: str, new_host: str) -> None:
        """Keep the remembered paths right after a rename (of a file or a whole directory)."""
        old, new = self.rel(old_host), self.rel(new_host)
        if old is None or new is None or old == new:
            return
        self._fresh()
        if not self.concerns(old_host):
            return
        with self._conn:
            self._conn.execute("BEGIN IMMEDIATE")
            self._conn.execute("UPDATE inodes SET path=? WHERE path=?", (new, old))
            self._conn.execute(
                "UPDATE inodes SET path=? || substr(path, ?) WHERE substr(path, 1, ?) = ?",
                (new, len(old) + 1, len(old) + 1, old + "/"),
            )
        self._reload()

    # ---- consistency ----------------------------------------------------------

    def revalidate(self) -> tuple[int, int]:
        """Check every record against the tree (at engine start).

        If the rootfs directory itself is another inode than the one the database
        was last used with, the tree was copied (new inode numbers everywhere):
        records move to whatever inode their path names now. Otherwise a record
        stays only while its path still names its inode with the same birth time;
        anything else was deleted or replaced behind our back (an inode number
        reused by a new file must not inherit an old owner) and is dropped.
        Returns (moved, dropped).
        """
        root_st = os.stat(self.rootfs)
        root_id = f"{root_st.st_dev}:{root_st.st_ino}"
        row = self._conn.execute("SELECT value FROM meta WHERE key='root'").fetchone()
        copied = row is not None and row[0] != root_id
        self._fresh(force=True)
        updates: list[tuple] = []
        deletes: list[tuple[int, int]] = []
        for rec in self._cache.values():
            if rec.path is None:
                continue
            host = os.path.normpath(os.path.join(self.rootfs, rec.path))
            try:
                st = os.lstat(host)
            except OSError:
                deletes.append((rec.dev, rec.ino))
                continue
            bt = btime_ns(host)
            if copied:
                updates.append((st.st_dev, st.st_ino, bt, rec.dev, rec.ino))
                continue
            same_inode = (st.st_dev, st.st_ino) == (rec.dev, rec.ino)
            same_birth = rec.btime is None or bt is None or rec.btime == bt
            if not (same_inode and same_birth):
                deletes.append((rec.dev, rec.ino))
        with self._conn:
            self._conn.execute("BEGIN IMMEDIATE")
            for key in deletes:
                self._conn.execute("DELETE FROM inodes WHERE dev=? AND ino=?", key)
            moved = []
            for dev, ino, bt, odev, oino in updates:
                rec = self._cache[(odev, oino)]
                moved.append((dev, ino, bt, rec.path, rec.uid, rec.gid, rec.mode, rec.rdev))
                self._conn.execute("DELETE FROM inodes WHERE dev=? AND ino=?", (odev, oino))
            self._conn.executemany(
                "INSERT OR REPLACE INTO inodes (dev, ino, btime, path, uid, gid, mode, rdev)"
                " VALUES (?,?,?,?,?,?,?,?)",
                moved,
            )
            self._conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('root', ?)", (root_id,)
            )
        self._reload()
        return len(updates), len(deletes)

    def seed(self, entries: Iterable[tuple[str, int | None, int | None, int | None]], source: str) -> int:
        """Seed from ownership an image unpacker could not apply, once per `source`.

        `entries` are (rootfs-relative path, uid, gid, mode or None). Returns how
        many records were written (0 if this source was already seeded).
        """
        if self._conn.execute("SELECT 1 FROM meta WHERE key=?", ("seeded:" + source,)).fetchone():
            return 0
        count = 0
        with self._conn:
            self._conn.execute("BEGIN IMMEDIATE")
            for rel, uid, gid, mode in entries:
                host = os.path.join(self.rootfs, rel.lstrip("/"))
                try:
                    st = os.lstat(host)
                except OSError:
                    continue
                guest_mode = None
                if mode is not None:
                    guest_mode = statmod.S_IFMT(st.st_mode) | (mode & 0o7777)
                    if guest_mode == st.st_mode:
                        guest_mode = None
                self._conn.execute(
                    "INSERT INTO inodes (dev, ino, btime, path, uid, gid, mode)"
                    " VALUES (?,?,?,?,?,?,?) ON CONFLICT(dev, ino) DO UPDATE SET"
                    " uid=excluded.uid, gid=excluded.gid,"
                    " mode=COALESCE(excluded.mode, mode)",
                    (st.st_dev, st.st_ino, btime_ns(host), os.path.normpath(rel.lstrip("/")),
                     uid, gid, guest_mode),
                )
                count += 1
            self._conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", ("seeded:" + source, "1")
            )
        self._reload()
        return count

    def close(self) -> None:
        self._conn.close()
