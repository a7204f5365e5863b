"""`ocirun commit`: a container's changes become one more layer of a new image."""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from layers.store import Store
from tests.helpers import assert_one_line_error, is_root, run_ocirun


def _ok(cp: subprocess.CompletedProcess) -> str:
    assert cp.returncode == 0, f"exit {cp.returncode}\nstdout: {cp.stdout}\nstderr: {cp.stderr}"
    return cp.stdout


@pytest.fixture
def root(tmp_path: Path, registry_images) -> Path:
    root = tmp_path / "root"
    _ok(run_ocirun("--root", root, "pull", "-q", registry_images.busybox))
    return root


SCRIPT = "echo hi > /etc/x && mkdir -p /home/u && chown 1000:1000 /home/u && rm /bin/cat && echo changed >> /etc/passwd"


def _layer(store: Store, image: str) -> dict[str, tarfile.TarInfo]:
    rec = store.resolve(image)
    with tarfile.open(store.blobs.path(rec.layers[-1])) as tar:
        return {m.name.rstrip("/"): m for m in tar.getmembers()}


def test_commit_makes_one_more_layer(root: Path, registry_images, tmp_path: Path) -> None:
    oc = lambda *a, **kw: run_ocirun("--root", root, *a, **kw)  # noqa: E731
    _ok(oc("run", "--name", "c1", "-e", "MINE=1", "-w", "/etc", registry_images.busybox, "sh", "-c", SCRIPT))
    store = Store.open(root)
    base = store.resolve(registry_images.busybox)
    out = _ok(oc("commit", "-m", "the message", "-a", "Ann <ann@example.org>", "c1", "committed:1"))
    rec = store.resolve("committed:1")
    assert out == rec.id + "\n"
    assert rec.layers[:-1] == base.layers and len(rec.layers) == len(base.layers) + 1
    members = _layer(store, "committed:1")
    assert members["etc/x"].uid == 0 and members["etc/x"].size == 3
    assert (members["home/u"].uid, members["home/u"].gid) == (1000, 1000)
    assert "bin/.wh.cat" in members and "etc/passwd" in members
    assert sorted(members) == ["bin", "bin/.wh.cat", "etc", "etc/passwd", "etc/x", "home", "home/u"]
    # the image the container came from is untouched
    assert not (base.rootfs / "etc/x").exists() and (base.rootfs / "bin/cat").is_symlink()
    assert b"changed" not in (base.rootfs / "etc/passwd").read_bytes()
    cfg = rec.config
    assert cfg["author"] == "Ann <ann@example.org>"
    assert cfg["history"][-1]["comment"] == "the message" and cfg["history"][-1]["created_by"] == "sh -c " + SCRIPT
    assert cfg["config"]["Cmd"] == ["sh", "-c", SCRIPT] and cfg["config"]["WorkingDir"] == "/etc"
    assert "MINE=1" in cfg["config"]["Env"] and not any(e.startswith("HOSTNAME=") for e in cfg["config"]["Env"])
    assert cfg["rootfs"]["diff_ids"][:-1] == base.config["rootfs"]["diff_ids"]
    rows = _ok(oc("history", "committed:1")).splitlines()
    assert rows[1].startswith(rec.short_id) and rows[1].rstrip().endswith("the message")
    # the new image runs with the changes
    shown = _ok(oc("run", "--rm", "committed:1", "sh", "-c", "read x < /etc/x; echo $x; ls /bin/cat 2>&1; ls -ldn /home/u"))
    lines = shown.splitlines()
    assert lines[0] == "hi" and "No such file" in lines[1] and lines[2].split()[2:4] == ["1000", "1000"], shown
    # the stored image has the owner: on disk as root, in its ownership file otherwise
    if is_root():
        assert (rec.rootfs / "home/u").stat().st_uid == 1000
    else:
        assert json.loads(rec.ownership_path.read_text())["entries"]["home/u"]["uid"] == 1000


def test_commit_pushes_and_skopeo_reads_it(root: Path, registry_images, tmp_path: Path) -> None:
    oc = lambda *a, **kw: run_ocirun("--root", root, *a, **kw)  # noqa: E731
    _ok(oc("run", "--name", "c2", registry_images.busybox, "sh", "-c", "echo pushed > /etc/y"))
    dst = f"{registry_images.host}/committed/c2:{os.getpid()}"
    _ok(oc("commit", "c2", dst))
    out = _ok(oc("push", dst))
    assert "Pushed" in out and "Mounted from test/busybox" in out
    doc = json.loads(subprocess.run(["skopeo", "--insecure-policy", "inspect", "--tls-verify=false", f"docker://{dst}"],
                                    capture_output=True, text=True, check=True).stdout)
    rec = Store.open(root).resolve(dst)
    assert doc["Digest"] == rec.manifest_digest and doc["Layers"] == rec.layers


def test_commit_errors(root: Path, registry_images) -> None:
    oc = lambda *a, **kw: run_ocirun("--root", root, *a, **kw)  # noqa: E731
    line = assert_one_line_error(oc("commit", "nosuch"), 1)
    assert line == "ocirun: No such container: nosuch"
    _ok(oc("create", "--name", "c3", registry_images.busybox, "true"))
    line = assert_one_line_error(oc("commit", "c3", "Bad:Name:x"), 125)
    assert "invalid reference format" in line
    before = sorted(os.listdir(root / "blobs/sha256"))
    line = assert_one_line_error(oc("commit", "-c", "RUN rm -rf /", "c3"), 125)
    assert line.startswith("ocirun: --change 'RUN rm -rf /': RUN is not a valid change command")
    assert sorted(os.listdir(root / "blobs/sha256")) == before
    out = _ok(oc("commit", "c3"))  # nothing changed, no name: a dangling image
    assert out.startswith("sha256:") and "<none>" in _ok(oc("images"))


def test_commit_changes(root: Path, registry_images) -> None:
    oc = lambda *a, **kw: run_ocirun("--root", root, *a, **kw)  # noqa: E731
    _ok(oc("create", "--name", "c4", registry_images.busybox, "true"))
    changes = ['ENV A=1 B="two words"', 'CMD ["echo", "from", "change"]', "LABEL team=ocirun", "EXPOSE 8080/udp",
               "WORKDIR /srv", "USER 1000", 'ENTRYPOINT ["/bin/sh", "-c", "exec \\"$0\\" \\"$@\\""]']
    args = [a for ch in changes for a in ("-c", ch)]
    _ok(oc("container", "commit", *args, "c4", "changed:1"))
    inner = Store.open(root).resolve("changed:1").config["config"]
    assert {"A=1", "B=two words"} <= set(inner["Env"])
    assert inner["Cmd"] == ["echo", "from", "change"] and inner["Labels"] == {"team": "ocirun"}
    assert inner["ExposedPorts"] == {"8080/udp": {}} and inner["WorkingDir"] == "/srv" and inner["User"] == "1000"
    _ok(oc("commit", "-c", 'CMD ["echo", "from", "change"]', "c4", "changed:2"))
    assert _ok(oc("run", "--rm", "changed:2")) == "from change\n"
