"""`ocirun history` and `ocirun save`, checked with skopeo and by loading the archive back."""

from __future__ import annotations

import json
import subprocess
import tarfile
from pathlib import Path

import pytest

from layers.imagedoc import add_history, canonical_json, empty_config, manifest
from layers.layerwrite import Entry, write_layer
from layers.store import Store
from tests.helpers import assert_one_line_error, run_ocirun
from tests.layers.tarbuild import make_pulled

BASE = [[("dir", "etc"), ("file", "etc/os-release", b"ID=test\n" * 1000)], [("file", "etc/motd", b"hello\n")]]


def _oci(root: Path, *args: str, **kw) -> subprocess.CompletedProcess:
    return run_ocirun("--root", str(root), *args, **kw)


def _ok(cp: subprocess.CompletedProcess) -> str:
    assert cp.returncode == 0, f"exit {cp.returncode}\nstdout: {cp.stdout}\nstderr: {cp.stderr}"
    return cp.stdout


def _skopeo(*args: str) -> str:
    res = subprocess.run(["skopeo", "--insecure-policy", *args], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    return res.stdout


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store.open(tmp_path / "root")
    s.install(make_pulled(s.blobs, BASE, name="docker.io/library/alpha", tag="1"))
    s.install(make_pulled(s.blobs, BASE[:1], name="127.0.0.1:5000/team/beta", tag="2"))
    return s


def _built(store: Store, tmp_path: Path) -> str:
    """An image made the way `build` makes them: two steps with layers, two without."""
    src = tmp_path / "payload"
    src.write_bytes(b"x" * 300_000)
    layers = [write_layer([Entry("big", "file", source=str(src), size=300_000)], store.blobs)]
    cfg = add_history(empty_config(), "/bin/sh -c #(nop) ADD file:abc in / ", "2024-01-01T00:00:00Z", layers[0])
    cfg = add_history(cfg, "/bin/sh -c #(nop)  ENV A=1", "2024-01-02T00:00:00Z")
    small = write_layer([Entry("etc", "dir", mode=0o755), Entry("etc/x", "file", source=str(src), size=10)], store.blobs)
    cfg = add_history(cfg, "/bin/sh -c echo " + "a very long command line " * 4, "2024-01-03T00:00:00Z", small,
                      comment="made here")
    cfg = add_history(cfg, '/bin/sh -c #(nop)  CMD ["sh"]', "2024-01-04T00:00:00Z")
    layers.append(small)
    config = canonical_json(cfg)
    rec = store.add_image(config, manifest(config, [lb.descriptor() for lb in layers]), tags=["built:1"])
    return rec.id


def test_history_columns(store: Store, tmp_path: Path) -> None:
    image_id = _built(store, tmp_path)
    out = _ok(_oci(store.root, "history", "built:1")).splitlines()
    assert out[0].split() == ["IMAGE", "CREATED", "CREATED", "BY", "SIZE", "COMMENT"]
    rows = out[1:]
    assert len(rows) == 4
    assert rows[0].startswith(image_id[7:19] + "   ") and all(r.startswith("<missing>") for r in rows[1:])
    assert 'CMD ["sh"]' in rows[0] and rows[0].split()[-1] == "0B"
    assert "/bin/sh -c echo a very long command line a v…" in rows[1] and "10.2kB" in rows[1]
    assert rows[1].rstrip().endswith("made here")
    assert "ENV A=1" in rows[2] and "307kB" in rows[3]  # the tar: 300000 bytes, header and padding
    full = _ok(_oci(store.root, "history", "--no-trunc", "-H", "false", "built:1")).splitlines()
    assert full[1].startswith(image_id) and "2024-01-04T00:00:00Z" in full[1]
    assert ("a very long command line " * 4).strip() in full[2] and " 10240 " in full[2]
    assert _ok(_oci(store.root, "history", "-q", "built:1")).split() == [image_id[7:19]] + ["<missing>"] * 3
    assert _ok(_oci(store.root, "image", "history", "-q", "alpha:1")).split()[1] == "<missing>"
    line = assert_one_line_error(_oci(store.root, "history", "nosuch"), 125)
    assert line == "ocirun: No such image: nosuch"


def test_save_docker_archive(store: Store, tmp_path: Path) -> None:
    alpha = store.resolve("alpha:1")
    archive = tmp_path / "out.tar"
    _ok(_oci(store.root, "tag", "alpha:1", "alpha:latest"))
    assert _ok(_oci(store.root, "save", "-o", str(archive), "alpha", "127.0.0.1:5000/team/beta:2")) == ""
    with tarfile.open(archive) as tar:
        (a, b) = json.load(tar.extractfile("manifest.json"))
        assert sorted(a["RepoTags"]) == ["alpha:1", "alpha:latest"] and b["RepoTags"] == ["127.0.0.1:5000/team/beta:2"]
        assert a["Layers"] == [f"blobs/sha256/{d[7:]}" for d in alpha.config["rootfs"]["diff_ids"]]
        assert json.load(tar.extractfile("repositories"))["alpha"]["1"] == alpha.config["rootfs"]["diff_ids"][-1][7:]
    doc = json.loads(_skopeo("inspect", f"docker-archive:{archive}:alpha:1"))
    assert doc["Layers"] == alpha.config["rootfs"]["diff_ids"]  # uncompressed: blob digest = diff_id
    cfg = json.loads(_skopeo("inspect", "--config", f"docker-archive:{archive}:127.0.0.1:5000/team/beta:2"))
    assert cfg["rootfs"]["diff_ids"] == store.resolve("127.0.0.1:5000/team/beta:2").config["rootfs"]["diff_ids"]
    _skopeo("copy", f"docker-archive:{archive}:alpha:latest", f"oci:{tmp_path / 'layout'}:x")
    # and back into another store: same image ids, same files
    other = tmp_path / "other"
    out = _ok(_oci(other, "load", "-i", str(archive))).splitlines()
    assert sorted(out) == ["Loaded image: 127.0.0.1:5000/team/beta:2", "Loaded image: alpha:1", "Loaded image: alpha:latest"]
    back = Store.open(other).resolve("alpha:1")
    assert back.id == alpha.id and (back.rootfs / "etc/motd").read_bytes() == b"hello\n"


def test_save_by_id_and_to_stdout(store: Store, tmp_path: Path) -> None:
    alpha = store.resolve("alpha:1")
    cp = run_ocirun("--root", str(store.root), "save", alpha.short_id, text=False)
    assert cp.returncode == 0, cp.stderr
    (tmp_path / "s.tar").write_bytes(cp.stdout)
    with tarfile.open(tmp_path / "s.tar") as tar:
        (entry,) = json.load(tar.extractfile("manifest.json"))
        assert entry["RepoTags"] is None and "repositories" not in tar.getnames()
    assert json.loads(_skopeo("inspect", "--config", f"docker-archive:{tmp_path / 's.tar'}"))["architecture"] == "amd64"


def test_save_oci_archive(store: Store, tmp_path: Path) -> None:
    alpha = store.resolve("alpha:1")
    archive = tmp_path / "oci.tar"
    _ok(_oci(store.root, "save", "--format", "oci-archive", "-o", str(archive), "alpha:1"))
    doc = json.loads(_skopeo("inspect", f"oci-archive:{archive}:1"))
    assert doc["Digest"] == alpha.manifest_digest and doc["Architecture"] == "amd64"
    assert doc["Layers"] == alpha.layers  # blobs as stored, compressed
    out = _ok(_oci(tmp_path / "other", "load", "-i", str(archive)))
    assert out == "Loaded image: alpha:1\n"


@pytest.mark.parametrize("args, words", [
    (["save", "-o", "{tmp}/x.tar", "nosuch:1"], "No such image: nosuch:1"),
    (["save", "--format", "zip", "-o", "{tmp}/x.tar", "alpha:1"], "'zip' is not one of"),
    (["save", "-o", "{tmp}/no/such/dir/x.tar", "alpha:1"], "no/such/dir"),
])
def test_save_errors(store: Store, tmp_path: Path, args: list[str], words: str) -> None:
    line = assert_one_line_error(_oci(store.root, *[a.format(tmp=tmp_path) for a in args]), 125)
    assert words in line
    assert not (tmp_path / "x.tar").exists() and not list(tmp_path.glob(".ocirun-save-*"))
