"""Damaged store state: one line naming what is damaged and how to repair it,
`ocirun system check [--repair]`, and nothing of a user's container lost."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from tests.helpers import assert_one_line_error, run_ocirun

HINT = "ocirun system check --repair"


class Store:
    """`ocirun --root ROOT ...` on a store of its own, with busybox pulled."""

    def __init__(self, root: Path, ref: str):
        self.root, self.ref = root, ref

    def __call__(self, *args, **kw):
        return run_ocirun("--root", self.root, *args, **kw)

    def ok(self, *args, **kw):
        cp = self(*args, **kw)
        assert cp.returncode == 0, f"ocirun {args}: exit {cp.returncode}\n{cp.stderr}"
        return cp

    def image_dir(self) -> Path:
        (d,) = (self.root / "images").iterdir()
        return d


@pytest.fixture(scope="module")
def pulled(tmp_path_factory, registry_images) -> Store:
    s = Store(tmp_path_factory.mktemp("damaged") / "root", registry_images.busybox)
    s.ok("pull", "-q", s.ref)
    return s


@pytest.fixture
def store(tmp_path, pulled) -> Store:
    """A copy of a store with busybox pulled (what the tests damage is their own)."""
    shutil.copytree(pulled.root, tmp_path / "root", symlinks=True)
    return Store(tmp_path / "root", pulled.ref)


def _warnings(cp) -> list[str]:
    return [line for line in cp.stderr.splitlines() if line.startswith("ocirun: warning:")]


@pytest.mark.parametrize("damage", [b'{"format": 1, "tags": {"x', b"[]"])
def test_damaged_name_table_names_the_repair_and_does_not_break_pulls(store, damage):
    repos = store.root / "repositories.json"
    repos.write_bytes(damage)
    line = assert_one_line_error(store("images"), 125)
    assert "repositories.json" in line and HINT in line
    assert store("system", "check").returncode == 1

    cp = store.ok("pull", "-q", store.ref)  # the next pull repairs it
    assert any("repositories.json" in w and "rebuilt" in w for w in _warnings(cp)), cp.stderr
    assert "busybox" in store.ok("images").stdout
    assert store.ok("system", "check").stdout.strip() == "no damage found"
    assert (store.root / "repositories.json.damaged").read_bytes() == damage


def test_repair_restores_the_name_table_from_its_last_good_copy(store):
    store.ok("tag", store.ref, "second:1")  # an edit: the table before it is kept
    (store.root / "repositories.json").write_bytes(b"\0" * 100)
    cp = store.ok("system", "check", "--repair")
    assert "repositories.json" in cp.stdout and "last good copy" in cp.stdout
    assert store.ok("run", "--rm", store.ref, "true").returncode == 0
    assert store.ok("system", "check").returncode == 0


@pytest.mark.parametrize("record", ["meta.json", "config.json"])
def test_damaged_image_record_is_rebuilt_from_blobs(store, record):
    (store.image_dir() / record).write_text('{"truncated": ')
    line = assert_one_line_error(store("run", "--rm", store.ref, "true"), 125)
    assert "damaged" in line and record in line and HINT in line
    cp = store.ok("images")  # the listing goes on, with a warning
    assert len(_warnings(cp)) == 1 and record in _warnings(cp)[0]
    cp = store("system", "check")
    assert cp.returncode == 1 and record in cp.stdout
    assert "records rebuilt" in store.ok("system", "check", "--repair").stdout
    store.ok("run", "--rm", store.ref, "true")
    assert store.ok("system", "check").stdout.strip() == "no damage found"


def test_image_that_cannot_be_rebuilt_is_deleted_and_pulled_again(store):
    idir = store.image_dir()
    (idir / "meta.json").write_text("garbage")
    (store.root / "blobs" / "sha256" / idir.name).unlink()  # its config blob is gone too
    cp = store.ok("system", "check", "--repair")
    assert "deleted (pull it again)" in cp.stdout
    assert not idir.exists() and store.ok("images", "-q").stdout == ""
    store.ok("pull", "-q", store.ref)
    store.ok("run", "--rm", store.ref, "true")


def test_corrupt_blob_is_found_and_dropped(store):
    meta = json.loads((store.image_dir() / "meta.json").read_text())
    layer = store.root / "blobs" / "sha256" / meta["layers"][0].split(":")[1]
    data = bytearray(layer.read_bytes())
    data[len(data) // 2] ^= 0xFF
    layer.chmod(0o644)  # blobs are read-only
    layer.write_bytes(bytes(data))
    layer.chmod(0o444)
    cp = store("system", "check")
    assert cp.returncode == 1 and "does not match" in cp.stdout and meta["layers"][0] in cp.stdout
    store.ok("system", "check", "--repair")
    assert not layer.exists()
    store.ok("run", "--rm", store.ref, "true")  # the unpacked tree is intact
    store.ok("pull", "-q", store.ref)
    assert layer.exists()


def test_damaged_container_config_is_kept_in_lost_and_found(store):
    cid = store.ok("create", store.ref, "true").stdout.strip()
    cdir = store.root / "containers" / cid
    (cdir / "rootfs" / "mydata").write_text("precious")
    (cdir / "config.json").write_text('{"Id": ')
    cp = store.ok("ps", "-a")
    assert cid[:12] not in cp.stdout
    assert any(cid[:12] in w and HINT in w for w in _warnings(cp)), cp.stderr
    cp = store.ok("system", "check", "--repair")
    assert "lost+found" in cp.stdout
    (kept,) = (store.root / "lost+found").iterdir()
    assert (kept / "rootfs" / "mydata").read_text() == "precious"
    assert store.ok("ps", "-a").stderr == ""


def test_damaged_fakeroot_database(store):
    script = "[ -e /f ] || { touch /f; chown 12:34 /f; }; stat -c %u:%g /f"
    cp = store.ok("run", "--name", "c", store.ref, "sh", "-c", script)
    assert cp.stdout.strip() == "12:34"
    (cid,) = (p.name for p in (store.root / "containers").iterdir() if not p.name.startswith("."))
    db = store.root / "containers" / cid / "fakeroot.db"
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    good = db.read_bytes()
    db.write_bytes(b"this is not sqlite" + good[18:])  # the header is gone
    line = assert_one_line_error(store("start", "-a", "c"))
    assert "fake-root database" in line and "damaged" in line and HINT in line
    assert store("system", "check").returncode == 1
    cp = store.ok("system", "check", "--repair")
    assert "fake-root database" in cp.stdout and db.with_name(db.name + ".damaged").exists()
    # the owners recorded there are lost (the header was), the container runs again
    assert store.ok("start", "-a", "c").stdout.strip() == "0:0"
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
