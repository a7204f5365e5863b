"""The fake-root database: persistence, renames, deletion, inode reuse, copies, concurrency."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import stat

from ocirun.engine.extensions.fake_id0.fakeroot_db import (
    FakeRootDB,
    btime_ns,
    default_db_path,
    open_db,
)


def make_tree(tmp_path):
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "shadow").write_text("x")
    return root


def test_owner_persists_across_connections(tmp_path):
    root = make_tree(tmp_path)
    dbp = str(tmp_path / "db")
    f = str(root / "etc" / "shadow")
    db = FakeRootDB(dbp, str(root))
    db.set_owner(os.lstat(f), f, 0, 42)
    db.close()
    db2 = FakeRootDB(dbp, str(root))
    st = os.lstat(f)
    rec = db2.get(st.st_dev, st.st_ino)
    assert (rec.uid, rec.gid, rec.path) == (0, 42, "etc/shadow")


def test_clearing_every_field_drops_the_record(tmp_path):
    root = make_tree(tmp_path)
    f = str(root / "etc" / "shadow")
    db = FakeRootDB(str(tmp_path / "db"), str(root))
    st = os.lstat(f)
    db.set_owner(st, f, 5, 5)
    db.set_mode(st, f, stat.S_IFREG | 0o4755)
    db.set_owner(st, f, None, None)
    assert db.get(st.st_dev, st.st_ino).mode == stat.S_IFREG | 0o4755
    db.set_mode(st, f, None)
    assert db.get(st.st_dev, st.st_ino) is None and len(db) == 0


def test_device_node_record(tmp_path):
    root = make_tree(tmp_path)
    node = root / "null"
    node.touch()
    db = FakeRootDB(str(tmp_path / "db"), str(root))
    st = os.lstat(node)
    db.set_node(st, str(node), stat.S_IFCHR | 0o666, os.makedev(1, 3))
    rec = db.get(st.st_dev, st.st_ino)
    assert stat.S_ISCHR(rec.mode) and rec.rdev == os.makedev(1, 3)


def test_rename_of_directory_updates_paths(tmp_path):
    root = make_tree(tmp_path)
    f = str(root / "etc" / "shadow")
    db = FakeRootDB(str(tmp_path / "db"), str(root))
    st = os.lstat(f)
    db.set_owner(st, f, 0, 42)
    os.rename(root / "etc", root / "etc2")
    db.renamed(str(root / "etc"), str(root / "etc2"))
    assert db.get(st.st_dev, st.st_ino).path == "etc2/shadow"
    db.close()
    # and it survives revalidation at the next start
    db = FakeRootDB(str(tmp_path / "db"), str(root))
    assert db.revalidate() == (0, 0)
    assert db.get(st.st_dev, st.st_ino).gid == 42


def test_forget_and_revalidate_drop_deleted_files(tmp_path):
    root = make_tree(tmp_path)
    a, b = root / "a", root / "b"
    a.touch()
    b.touch()
    db = FakeRootDB(str(tmp_path / "db"), str(root))
    sa, sb = os.lstat(a), os.lstat(b)
    db.set_owner(sa, str(a), 1, 1)
    db.set_owner(sb, str(b), 2, 2)
    db.forget(sa.st_dev, sa.st_ino)
    assert db.get(sa.st_dev, sa.st_ino) is None
    os.unlink(b)  # deleted behind the database's back
    assert db.revalidate() == (0, 1)
    assert len(db) == 0


def test_inode_reuse_is_not_inherited(tmp_path):
    """A new file that gets the inode number of a deleted recorded file must not
    inherit its owner: the birth time tells them apart at revalidation."""
    root = make_tree(tmp_path)
    f = root / "victim"
    f.touch()
    db = FakeRootDB(str(tmp_path / "db"), str(root))
    st = os.lstat(f)
    db.set_owner(st, str(f), 7, 7)
    if btime_ns(str(f)) is None:
        return  # no birth time on this filesystem: covered by forget-on-unlink
    for _ in range(200):
        os.unlink(f)
        f.touch()
        if os.lstat(f).st_ino == st.st_ino:
            break
    # same path, new file: dropped whether or not the inode number was reused
    db.revalidate()
    assert db.get(st.st_dev, st.st_ino) is None


def test_copied_tree_finds_its_records(tmp_path):
    root = make_tree(tmp_path)
    f = str(root / "etc" / "shadow")
    db = FakeRootDB(str(tmp_path / "db"), str(root))
    db.set_owner(os.lstat(f), f, 0, 42)
    db.close()
    copy = tmp_path / "copy"
    shutil.copytree(root, copy, symlinks=True)
    shutil.copy(tmp_path / "db", tmp_path / "db2")
    db2 = FakeRootDB(str(tmp_path / "db2"), str(copy))
    db2.revalidate()
    st = os.lstat(copy / "etc" / "shadow")
    rec = db2.get(st.st_dev, st.st_ino)
    assert rec is not None and rec.gid == 42


def _writer(dbp, root, paths, uid):
    db = FakeRootDB(dbp, root)
    for p in paths:
        db.set_owner(os.lstat(p), p, uid, uid)
    db.close()


def test_two_writers_and_a_reader_see_each_other(tmp_path):
    root = make_tree(tmp_path)
    files = []
    for i in range(60):
        p = root / f"f{i}"
        p.touch()
        files.append(str(p))
    dbp = str(tmp_path / "db")
    reader = FakeRootDB(dbp, str(root))
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(dbp, str(root), files[i::2], 100 + i))
             for i in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    # the long-lived reader sees the other connections' commits
    assert len(reader) == 60
    st = os.lstat(files[1])
    assert reader.get(st.st_dev, st.st_ino).uid == 101


def _opener(rootfs: str, out) -> None:
    db, warning = open_db(rootfs)
    out.put((db.path, warning))


def test_engines_opening_a_new_database_at_once_all_use_it(tmp_path, monkeypatch):
    """Engines started together on a fresh tree race for sqlite's switch to WAL mode,
    which answers SQLITE_BUSY without waiting (about 1 round in 10 here with 6 of
    them): open_db must wait for the database, not fall back to another file whose
    owners the other engines never see (-0 runs that lost all their chowns)."""
    monkeypatch.delenv("OCIRUN_FAKEROOT_DB", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    ctx = multiprocessing.get_context("fork")
    for round_ in range(60):
        root = tmp_path / f"r{round_}" / "rootfs"
        root.mkdir(parents=True)
        out = ctx.Queue()
        procs = [ctx.Process(target=_opener, args=(str(root), out)) for _ in range(6)]
        for p in procs:
            p.start()
        got = [out.get(timeout=60) for _ in procs]
        for p in procs:
            p.join(60)
        assert got == [(default_db_path(str(root)), None)] * 6, f"round {round_}: {got}"


def test_seed_once(tmp_path):
    root = make_tree(tmp_path)
    db = FakeRootDB(str(tmp_path / "db"), str(root))
    entries = [("/etc/shadow", 0, 42, 0o640), ("missing", 1, 1, None)]
    assert db.seed(entries, "images/abc/ownership") == 1
    assert db.seed(entries, "images/abc/ownership") == 0
    st = os.lstat(root / "etc" / "shadow")
    rec = db.get(st.st_dev, st.st_ino)
    assert (rec.uid, rec.gid) == (0, 42)


def test_default_db_path(tmp_path, monkeypatch):
    monkeypatch.delenv("OCIRUN_FAKEROOT_DB", raising=False)
    root = make_tree(tmp_path)
    assert default_db_path(str(root)) == str(tmp_path / ".rootfs.ocirun-fakeroot.db")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    p = default_db_path("/")
    if not os.access("/", os.W_OK):
        assert p.startswith(str(tmp_path / "state"))
    monkeypatch.setenv("OCIRUN_FAKEROOT_DB", "/x/y.db")
    assert default_db_path(str(root)) == "/x/y.db"


def test_files_outside_the_rootfs_are_remembered_for_the_run_only(tmp_path):
    root = make_tree(tmp_path)
    outside = tmp_path / "host-file"
    outside.touch()
    dbp = str(tmp_path / "db")
    db = FakeRootDB(dbp, str(root))
    st = os.lstat(outside)
    db.set_owner(st, str(outside), 5, 6)
    db.set_mode(st, None, stat.S_IFREG | 0o4700)  # an fd whose path is unknown
    rec = db.get(st.st_dev, st.st_ino)
    assert (rec.uid, rec.gid, rec.mode) == (5, 6, stat.S_IFREG | 0o4700) and db.any()
    db.close()
    assert FakeRootDB(dbp, str(root)).get(st.st_dev, st.st_ino) is None
