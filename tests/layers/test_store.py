"""Store: install, lookups, rmi, prune, one copy under concurrency, killed unpacks."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time

import pytest

from layers.store import Store
from layers.treewriter import UnsafeEntryError
from ocirun.errors import OcirunError
from tests.layers.tarbuild import make_pulled, many_files

BASE = [[("dir", "etc"), ("file", "etc/os-release", "ID=test\n"), ("dir", "bin"), ("file", "bin/sh", "#!", 0o755)]]


def test_install_and_resolve(tmp_path):
    store = Store.open(tmp_path)
    pulled = make_pulled(store.blobs, BASE)
    rec = store.install(pulled)
    assert rec.id == pulled.config_digest
    assert rec.repo_tags == ["test:latest"]
    assert (rec.rootfs / "etc/os-release").read_text() == "ID=test\n"
    assert rec.platform == "linux/amd64" and rec.size > 0
    assert rec.rootfs == tmp_path / "images" / rec.id[7:] / "rootfs"
    for ref in ("test", "test:latest", "docker.io/library/test:latest", rec.id, rec.id[7:19], rec.id[7:],
                f"test@{pulled.manifest_digest}"):
        found = store.resolve(ref)
        assert found is not None and found.id == rec.id, ref
    assert store.resolve("other") is None
    assert store.resolve("test", platform="linux/arm64") is None
    assert [r.id for r in store.list_images()] == [rec.id]
    # installing again is a no-op that returns the same record
    assert store.install(pulled).rootfs == rec.rootfs


def test_two_platforms_under_one_tag(tmp_path):
    store = Store.open(tmp_path)
    amd = store.install(make_pulled(store.blobs, BASE, arch="amd64"))
    arm = store.install(make_pulled(store.blobs, BASE + [[("file", "arm", "1")]], arch="arm64"))
    assert store.resolve("test", platform="linux/arm64").id == arm.id
    assert store.resolve("test", platform="linux/amd64").id == amd.id
    host = {"x86_64": amd, "aarch64": arm}[os.uname().machine]
    assert store.resolve("test").id == host.id  # the host's platform
    assert len(store.table_rows()) == 2


def test_hostile_image_leaves_store_as_it_was(tmp_path):
    store = Store.open(tmp_path)
    good = store.install(make_pulled(store.blobs, BASE))
    before_blobs = sorted(store.blobs.digests())
    before_repos = (tmp_path / "repositories.json").read_text()
    evil = make_pulled(store.blobs, [[("symlink", "evil", "/tmp")], [("file", "evil/pwned", "x")]], name="docker.io/library/evil")
    with pytest.raises(UnsafeEntryError, match="evil/pwned"):
        store.install(evil)
    assert sorted(store.blobs.digests()) == before_blobs
    assert (tmp_path / "repositories.json").read_text() == before_repos
    assert os.listdir(tmp_path / "images") == [good.id[7:]]
    assert [e for e in os.listdir(tmp_path / "tmp") if e != "partial"] == []
    assert store.resolve("evil") is None


def test_rmi_untag_delete_and_container_guard(tmp_path):
    from ocirun.run.containers import ContainerStore

    store = Store.open(tmp_path, containers=ContainerStore(tmp_path))
    rec = store.install(make_pulled(store.blobs, BASE))
    store.install(make_pulled(store.blobs, BASE, tag="v2"))  # same image, second tag
    assert store.resolve("test:v2").id == rec.id
    assert store.remove("test:v2") == ["Untagged: test:v2"]
    assert store.resolve("test:latest").id == rec.id
    cdir = tmp_path / "containers" / "c0ffee123456"
    cdir.mkdir(parents=True)
    (cdir / "config.json").write_text(json.dumps({"ImageID": rec.id}))
    with pytest.raises(OcirunError, match="container c0ffee123456 is using"):
        store.remove("test")
    assert store.resolve("test").id == rec.id
    lines = store.remove("test", force=True)
    assert lines == ["Untagged: test:latest", f"Deleted: {rec.id}"]
    assert store.list_images() == [] and list(store.blobs.digests()) == []
    with pytest.raises(OcirunError, match="No such image"):
        store.remove("test")


def test_rmi_by_id(tmp_path):
    store = Store.open(tmp_path)
    rec = store.install(make_pulled(store.blobs, BASE))
    assert store.remove(rec.id[7:19]) == ["Untagged: test:latest", f"Untagged: test@{rec.manifest_digest}", f"Deleted: {rec.id}"]
    assert not (tmp_path / "images" / rec.id[7:]).exists()


def test_prune_dangling_and_leftovers(tmp_path):
    store = Store.open(tmp_path)
    dangling = store.install(make_pulled(store.blobs, BASE, name=None, tag=None))
    kept = store.install(make_pulled(store.blobs, BASE + [[("file", "x", "x")]]))
    stale = tmp_path / "tmp" / f"unpack-{'a' * 64}-xyz"
    (stale / "rootfs/ro").mkdir(parents=True)
    (stale / "rootfs/ro").chmod(0o555)
    incomplete = tmp_path / "images" / ("b" * 64)
    (incomplete / "rootfs").mkdir(parents=True)
    report = store.prune()
    assert report.deleted == [dangling.id]
    assert not stale.exists() and not incomplete.exists()
    assert [r.id for r in store.list_images()] == [kept.id]
    assert store.resolve("test") is not None
    assert store.prune(all_images=True).deleted == [kept.id]


def test_ensure_unpacked_rebuilds_missing_rootfs(tmp_path):
    from ocirun.util.fs import rmtree

    store = Store.open(tmp_path)
    rec = store.install(make_pulled(store.blobs, BASE))
    rmtree(rec.rootfs)
    assert store.ensure_unpacked(rec) == rec.rootfs
    assert (rec.rootfs / "bin/sh").read_text() == "#!"


def test_df(tmp_path):
    store = Store.open(tmp_path)
    store.install(make_pulled(store.blobs, BASE))
    df = store.df()
    assert df["Images"]["total"] == 1 and df["Images"]["size"] > 0
    assert df["Layer blobs"]["total"] == 3  # one layer, config, manifest


def test_open_location(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("OCIRUN_ROOT", raising=False)
    assert Store.open().root == tmp_path / "xdg" / "ocirun"
    monkeypatch.setenv("OCIRUN_ROOT", str(tmp_path / "env"))
    assert Store.open().root == tmp_path / "env"
    assert Store.open(tmp_path / "flag").root == tmp_path / "flag"


def _install_in_child(root: str, pulled_layers, barrier) -> None:
    store = Store(root)
    pulled = make_pulled(store.blobs, pulled_layers)
    barrier.wait(30)
    store.install(pulled)


def test_two_processes_install_the_same_image(tmp_path):
    store = Store.open(tmp_path)
    layers = [many_files(2000), many_files(500, "g")]
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_install_in_child, args=(str(tmp_path), layers, barrier)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    recs = store.list_images()
    assert len(recs) == 1 and len(os.listdir(tmp_path / "images")) == 1
    assert len(os.listdir(recs[0].rootfs / "f0")) == 100
    assert [e for e in os.listdir(tmp_path / "tmp") if e != "partial"] == []


KILL_SCRIPT = """
import sys
from layers.store import Store
from tests.layers.tarbuild import make_pulled, many_files
store = Store.open(sys.argv[1])
pulled = make_pulled(store.blobs, [many_files(20000, size=2000)], how="tar")
print("ready", flush=True)
store.install(pulled)
print("done", flush=True)
"""


def test_killed_unpack_leaves_nothing_complete(tmp_path):
    root = tmp_path / "store"
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(root)], stdout=subprocess.PIPE, text=True,
                            cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    assert proc.stdout.readline().strip() == "ready"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # wait until unpacking has written files
        stages = [e for e in os.listdir(root / "tmp") if e.startswith("unpack-")]
        if stages and os.path.isdir(root / "tmp" / stages[0] / "rootfs" / "f3"):
            break
        time.sleep(0.01)
    else:
        pytest.fail("unpack never started")
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    store = Store.open(root)
    assert store.list_images() == [] and store.resolve("test") is None
    # the same pull again succeeds (and cleans the stale staging dir)
    pulled = make_pulled(store.blobs, [many_files(20000, size=2000)], how="tar")
    rec = store.install(pulled)
    assert len(os.listdir(rec.rootfs)) == 200
    assert [e for e in os.listdir(root / "tmp") if e != "partial"] == []
