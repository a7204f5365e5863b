"""`ocirun push` and `ocirun tag` against real docker-registry instances on loopback.

What was pushed is checked with skopeo (inspect, copy back) and by pulling it again.
"""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import pytest

from layers.store import Store
from tests.helpers import assert_one_line_error, run_ocirun
from tests.registry.conftest import Pushed
from tests.registry.regserver import PASSWORD, USER, Registry, start_registry


def _oci(root: Path, *args: str, env: dict[str, str] | None = None, input: str | None = None) -> subprocess.CompletedProcess:
    return run_ocirun("--root", str(root), *args, env=env, input=input)


def _ok(cp: subprocess.CompletedProcess) -> str:
    assert cp.returncode == 0, f"exit {cp.returncode}\nstdout: {cp.stdout}\nstderr: {cp.stderr}"
    return cp.stdout


def _skopeo(*args: str, creds: str | None = None) -> str:
    cmd = ["skopeo", "--insecure-policy", *args[:1], "--tls-verify=false", *(["--creds", creds] if creds else []), *args[1:]]
    if args[0] == "copy":
        cmd = ["skopeo", "--insecure-policy", "copy", "--src-tls-verify=false", *(["--src-creds", creds] if creds else []), *args[1:]]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    return res.stdout


@pytest.fixture
def fresh_registry(tmp_path: Path):
    reg = start_registry(tmp_path / "fresh")
    yield reg
    reg.stop()


def _pulled(root: Path, ref: str) -> Store:
    _ok(_oci(root, "pull", "-q", ref))
    return Store.open(root)


def _push_lines(out: str) -> tuple[list[str], list[str]]:
    """(layer lines, other lines) of push's output."""
    lines = out.splitlines()
    return [ln for ln in lines if len(ln.split(":")[0]) == 12], [ln for ln in lines if len(ln.split(":")[0]) != 12]


def test_tag_names_the_same_image(anon_registry: Pushed, tmp_path: Path) -> None:
    root = tmp_path / "root"
    store = _pulled(root, anon_registry.ref("library/busybox:single"))
    src = store.resolve(anon_registry.ref("library/busybox:single"))
    cp = _oci(root, "tag", anon_registry.ref("library/busybox:single"), "mine/bb:2")
    assert _ok(cp) == "" and cp.stderr == ""
    _ok(_oci(root, "tag", src.short_id, "localhost:5000/x"))
    rec = store.resolve("mine/bb:2")
    assert rec is not None and rec.id == src.id
    assert "mine/bb:2" in rec.repo_tags and "localhost:5000/x:latest" in rec.repo_tags
    rows = _ok(_oci(root, "images", "mine/bb")).splitlines()
    assert rows[1].split()[:3] == ["mine/bb", "2", src.short_id]
    line = assert_one_line_error(_oci(root, "tag", "nosuch:1", "a:b"), 125)
    assert line == "ocirun: No such image: nosuch:1"
    line = assert_one_line_error(_oci(root, "tag", "mine/bb:2", "Bad/Name"), 125)
    assert "invalid reference format" in line


def test_push_mounts_from_the_source_repository(anon_registry: Pushed, tmp_path: Path) -> None:
    root = tmp_path / "root"
    src = anon_registry.ref("library/busybox:single")
    store = _pulled(root, src)
    dst = anon_registry.ref("pushed/mount:1")
    _ok(_oci(root, "tag", src, dst))
    out = _ok(_oci(root, "push", dst))
    layers, rest = _push_lines(out)
    rec = store.resolve(dst)
    assert rest[0] == f"The push refers to repository [{anon_registry.reg.host}/pushed/mount]"
    assert sorted(layers) == sorted(f"{d[7:19]}: Mounted from library/busybox" for d in rec.layers)
    assert rest[1] == f"1: digest: {rec.manifest_digest} size: {(rec.path / 'manifest.json').stat().st_size}"
    doc = json.loads(_skopeo("inspect", f"docker://{dst}"))
    assert doc["Digest"] == rec.manifest_digest and doc["Layers"] == rec.layers
    again = _ok(_oci(root, "push", dst))
    assert sorted(_push_lines(again)[0]) == sorted(f"{d[7:19]}: Layer already exists" for d in rec.layers)
    assert rec.manifest_digest in _ok(_oci(root, "images", "--digests", dst))


@pytest.mark.parametrize("chunk", ["300000", None], ids=["chunked", "monolithic"])
def test_push_uploads_to_an_empty_registry(anon_registry: Pushed, fresh_registry: Registry, tmp_path: Path, chunk: str | None) -> None:
    root = tmp_path / "root"
    store = _pulled(root, anon_registry.ref("library/busybox:multi"))
    dst = f"{fresh_registry.host}/up/bb:v2"
    _ok(_oci(root, "tag", anon_registry.ref("library/busybox:multi"), dst))
    env = {"OCIRUN_PUSH_CHUNK_SIZE": chunk} if chunk else None
    out = _ok(_oci(root, "push", dst, env=env))
    rec = store.resolve(dst)
    assert sorted(_push_lines(out)[0]) == sorted(f"{d[7:19]}: Pushed" for d in rec.layers)
    # what skopeo copies back is byte for byte what the store holds
    _skopeo("copy", f"docker://{dst}", f"oci:{tmp_path / 'back'}:v2")
    index = json.loads((tmp_path / "back/index.json").read_text())
    assert index["manifests"][0]["digest"] == rec.manifest_digest
    for digest in [rec.manifest_digest, rec.id, *rec.layers]:
        back = tmp_path / "back/blobs/sha256" / digest[7:]
        assert back.read_bytes() == store.blobs.path(digest).read_bytes(), digest
    other = tmp_path / "other"
    assert _pulled(other, dst).resolve(dst).id == rec.id


def test_push_all_tags_and_quiet(anon_registry: Pushed, fresh_registry: Registry, tmp_path: Path) -> None:
    root = tmp_path / "root"
    _pulled(root, anon_registry.ref("library/busybox:single"))
    for t in ("a", "b"):
        _ok(_oci(root, "tag", anon_registry.ref("library/busybox:single"), f"{fresh_registry.host}/all/bb:{t}"))
    out = _ok(_oci(root, "push", "-a", "-q", f"{fresh_registry.host}/all/bb"))
    assert out == f"{fresh_registry.host}/all/bb\n"
    tags = json.loads(_skopeo("list-tags", f"docker://{fresh_registry.host}/all/bb"))["Tags"]
    assert sorted(tags) == ["a", "b"]


def test_push_with_basic_auth_after_login(anon_registry: Pushed, basic_registry: Pushed, tmp_path: Path) -> None:
    root = tmp_path / "root"
    _pulled(root, anon_registry.ref("library/busybox:single"))
    dst = basic_registry.ref("pushed/basic:1")
    _ok(_oci(root, "tag", anon_registry.ref("library/busybox:single"), dst))
    line = assert_one_line_error(_oci(root, "push", dst), 125)
    assert "unauthorized" in line and f"ocirun login {basic_registry.reg.host}" in line
    _ok(_oci(root, "login", "-u", USER, "--password-stdin", basic_registry.reg.host, input=PASSWORD + "\n"))
    out = _ok(_oci(root, "push", dst))
    assert "1: digest: sha256:" in out
    doc = json.loads(_skopeo("inspect", f"docker://{dst}", creds=basic_registry.reg.creds))
    assert doc["Architecture"] == "amd64"


def test_push_with_token_auth_from_docker_config(token_registry: Pushed, tmp_path: Path, isolated_env: Path) -> None:
    cfg = isolated_env / ".docker/config.json"
    cfg.parent.mkdir()
    auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    cfg.write_text(json.dumps({"auths": {token_registry.reg.host: {"auth": auth}}}))
    root = tmp_path / "root"
    src = token_registry.ref("library/busybox:single")
    _pulled(root, src)
    dst = token_registry.ref("pushed/token:1")
    _ok(_oci(root, "tag", src, dst))
    out = _ok(_oci(root, "push", dst))
    assert "Mounted from library/busybox" in out
    ts = token_registry.reg.token_server
    assert any("repository:pushed/token:pull,push" in r["scope"] and "repository:library/busybox:pull" in r["scope"]
               for r in ts.requests), ts.requests
    doc = json.loads(_skopeo("inspect", f"docker://{dst}", creds=token_registry.reg.creds))
    assert doc["Name"] == f"{token_registry.reg.host}/pushed/token"


def test_anonymous_push_to_a_token_registry_is_refused(token_registry: Pushed, tmp_path: Path) -> None:
    root = tmp_path / "root"
    src = token_registry.ref("public/busybox:single")
    _pulled(root, src)
    dst = token_registry.ref("public/busybox:mine")
    _ok(_oci(root, "tag", src, dst))
    line = assert_one_line_error(_oci(root, "push", dst), 125)
    assert "unauthorized" in line and "push access denied for public/busybox" in line


def test_refused_push_says_what_the_registry_said(anon_registry: Pushed, tmp_path: Path) -> None:
    reg = start_registry(tmp_path / "ro", readonly=True)
    try:
        root = tmp_path / "root"
        _pulled(root, anon_registry.ref("library/busybox:single"))
        dst = f"{reg.host}/ro/bb:1"
        _ok(_oci(root, "tag", anon_registry.ref("library/busybox:single"), dst))
        line = assert_one_line_error(_oci(root, "push", dst), 125)
        assert f"to {reg.host}/ro/bb refused: HTTP 405: Method not allowed" in line
    finally:
        reg.stop()


def test_push_of_an_unknown_image(tmp_path: Path) -> None:
    line = assert_one_line_error(_oci(tmp_path, "push", "127.0.0.1:9/no/such:1"), 125)
    assert line == "ocirun: An image does not exist locally with the tag: 127.0.0.1:9/no/such"


def test_push_follows_pulls_tls_rules(anon_registry: Pushed, tmp_path: Path) -> None:
    reg = start_registry(tmp_path / "tls", tls=True)
    try:
        root = tmp_path / "root"
        _pulled(root, anon_registry.ref("library/busybox:single"))
        dst = f"{reg.host}/tls/bb:1"
        _ok(_oci(root, "tag", anon_registry.ref("library/busybox:single"), dst))
        strict = {"OCIRUN_INSECURE_LOOPBACK": "0"}  # 127.0.0.1 treated as a remote registry
        line = assert_one_line_error(_oci(root, "push", dst, env=strict), 125)
        assert f"cannot reach registry {reg.host}: TLS verification failed" in line
        assert "1: digest: sha256:" in _ok(_oci(root, "push", dst, env={**strict, "REQUESTS_CA_BUNDLE": str(reg.cert)}))
        assert "Layer already exists" in _ok(_oci(root, "push", dst))  # loopback: HTTPS, certificate not checked
    finally:
        reg.stop()


def test_push_progress_on_a_terminal(anon_registry: Pushed, fresh_registry: Registry, tmp_path: Path) -> None:
    """stderr a terminal: pull's board there (byte counts), stdout only docker's first and last lines."""
    import os
    import pty

    from tests.helpers import ocirun_argv, ocirun_env

    root = tmp_path / "root"
    _pulled(root, anon_registry.ref("library/busybox:single"))
    dst = f"{fresh_registry.host}/tty/bb:1"
    _ok(_oci(root, "tag", anon_registry.ref("library/busybox:single"), dst))
    master, slave = pty.openpty()
    proc = subprocess.Popen(ocirun_argv("--root", root, "push", dst), env=ocirun_env(), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=slave, text=True)
    os.close(slave)
    board = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        board += chunk
    out = proc.communicate(timeout=60)[0]
    os.close(master)
    assert proc.returncode == 0, board
    lines = out.splitlines()
    assert len(lines) == 2 and lines[0].startswith("The push refers") and lines[1].startswith("1: digest: sha256:")
    text = board.decode()
    assert "Pushed" in text and " / " in text and "\x1b[" in text, text
