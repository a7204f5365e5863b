"""Store.add_image: an image made here (config + manifest + layer blobs) becomes a stored,
tagged image, unpacked from its layers or moved in from a tree already built."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from layers.diff import Owners, diff_tree
from layers.imagedoc import add_history, canonical_json, empty_config, manifest, rfc3339
from layers.layerwrite import write_layer
from layers.store import Store


def _image(store: Store, src: Path, docker: bool = False) -> tuple[bytes, bytes]:
    blob = write_layer(diff_tree(src, None, Owners(), exclude=()), store.blobs, "gzip", epoch=0)
    cfg = add_history(empty_config(), "COPY . /", rfc3339(0), blob)
    cfg["config"] = {"Cmd": ["/hello"]}
    config = canonical_json(cfg)
    return config, manifest(config, [blob.descriptor(docker)], docker)


def _src(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    (src / "etc").mkdir(parents=True)
    (src / "etc/motd").write_text("built here\n")
    (src / "hello").write_text("#!/bin/sh\necho hi\n")
    os.chmod(src / "hello", 0o755)
    return src


def test_add_image_unpacks_and_tags(tmp_path: Path):
    store = Store.open(tmp_path / "store")
    config, man = _image(store, _src(tmp_path))
    rec = store.add_image(config, man, tags=["example.com/me/app:1", "app"])
    assert store.resolve("app:latest").id == rec.id == store.resolve("example.com/me/app:1").id
    assert sorted(rec.repo_tags) == ["app:latest", "example.com/me/app:1"]
    assert (rec.rootfs / "etc/motd").read_text() == "built here\n"
    assert os.stat(rec.rootfs / "hello").st_mode & 0o777 == 0o755
    assert store.blobs.has(rec.id) and store.blobs.has(rec.manifest_digest)
    assert rec.config["config"]["Cmd"] == ["/hello"]
    assert json.loads(store.blobs.read_bytes(rec.manifest_digest))["layers"][0]["digest"] == rec.layers[0]


def test_add_image_moves_a_prebuilt_tree_in(tmp_path: Path):
    store = Store.open(tmp_path / "store")
    src = _src(tmp_path)
    config, man = _image(store, src, docker=True)
    stage = tmp_path / "store/tmp/stage"
    stage.mkdir()
    shutil.copytree(src, stage / "rootfs")
    (stage / "ownership").write_text('{"version": 1, "entries": {}}\n')
    marker = os.lstat(stage / "rootfs/hello").st_ino
    rec = store.add_image(config, man, tags=["prebuilt:x"], tree=stage / "rootfs")
    assert os.lstat(rec.rootfs / "hello").st_ino == marker  # moved, not unpacked again
    assert rec.ownership_path.exists() and not (stage / "rootfs").exists()
    assert json.loads((rec.path / "manifest.json").read_text())["mediaType"].startswith("application/vnd.docker")
    # untagging the only tag deletes it, and its blobs go with it
    store.remove("prebuilt:x")
    assert store.get(rec.id) is None and not store.blobs.has(rec.layers[0])


def test_container_changes_of_a_real_container(tmp_path: Path):
    """A container run by the runner (fake root): its chown is in the layer, not the real uid."""
    from layers.diff import container_changes
    from ocirun.run.containers import ContainerStore
    from tests.helpers import run_ocirun
    from tests.helpers.trees import make_busybox_tree

    store = Store.open(tmp_path / "store")
    config, man = _image(store, make_busybox_tree(tmp_path / "bb"))
    store.add_image(config, man, tags=["bb:1"])
    script = ("mkdir -p /srv/data && echo hi > /srv/data/f && chown -R 1234:4321 /srv/data && "
              "rm /etc/group && chmod 0700 /home/user && ln /srv/data/f /srv/f2 && echo x > /etc/hosts")
    cp = run_ocirun("run", "--name", "c1", "bb:1", "/bin/sh", "-c", script,
                    env={"OCIRUN_ROOT": str(tmp_path / "store")})
    assert cp.returncode == 0, cp.stderr
    c = ContainerStore(store.root).get("c1")
    entries = {e.name: e for e in container_changes(c.image_root, c.rootfs, c.path)}
    assert set(entries) == {"srv", "srv/data", "srv/data/f", "srv/f2", "etc", "etc/group", "home",
                            "home/user"}, sorted(entries)
    assert (entries["srv/data"].uid, entries["srv/data"].gid) == (1234, 4321)
    assert (entries["srv/data/f"].uid, entries["srv/f2"].kind) == (1234, "hardlink")
    assert (entries["srv"].uid, entries["srv"].gid) == (0, 0)
    assert entries["etc/group"].kind == "whiteout"
    assert entries["home/user"].mode == 0o700
    assert "bin" not in entries  # untouched lazy directories are not walked
