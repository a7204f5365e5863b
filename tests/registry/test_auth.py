"""Basic and Bearer token auth against real registries; credential sources; login/logout."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from ocirun.errors import OcirunError
from registry import auth
from registry.auth import Credentials, find_credentials, parse_challenge
from registry.client import login
from registry.platform import Platform
from registry.pull import pull_image
from tests.registry.conftest import Pushed
from tests.registry.dirsink import DirectorySink
from tests.registry.fakereg import FakeRegistry
from tests.registry.regserver import PASSWORD, USER


def _b64(user: str, pw: str) -> str:
    return base64.b64encode(f"{user}:{pw}".encode()).decode()


def test_parse_challenge() -> None:
    ch = parse_challenge('Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push"')
    assert ch is not None and ch.scheme == "bearer"
    assert ch.params == {"realm": "https://auth.example/token", "service": "registry.example", "scope": "repository:a/b:pull,push"}
    assert parse_challenge('Basic realm=basic-realm').params == {"realm": "basic-realm"}
    assert parse_challenge("") is None


# ------------------------------------------------------------------ Basic


def test_basic_without_credentials_is_unauthorized(basic_registry: Pushed, tmp_path: Path) -> None:
    with pytest.raises(OcirunError) as exc:
        pull_image(basic_registry.ref("library/busybox:multi"), None, DirectorySink(tmp_path), progress=False)
    assert exc.value.message == f"unauthorized: pull access denied for library/busybox: the repository does not exist or requires authentication (use `ocirun login {basic_registry.reg.host}`)"


def test_basic_with_docker_config(basic_registry: Pushed, tmp_path: Path, isolated_env: Path) -> None:
    cfg = isolated_env / ".docker/config.json"
    cfg.parent.mkdir()
    cfg.write_text(json.dumps({"auths": {basic_registry.reg.host: {"auth": _b64(USER, PASSWORD)}}}))
    img = pull_image(basic_registry.ref("library/busybox:multi"), Platform.parse("arm64"), DirectorySink(tmp_path), progress=False)
    assert str(img.platform) == "linux/arm64/v8"


def test_basic_with_wrong_password(basic_registry: Pushed, tmp_path: Path, isolated_env: Path) -> None:
    cfg = isolated_env / ".docker/config.json"
    cfg.parent.mkdir()
    cfg.write_text(json.dumps({"auths": {f"https://{basic_registry.reg.host}": {"auth": _b64(USER, "nope")}}}))
    with pytest.raises(OcirunError, match=f"^unauthorized: {basic_registry.reg.host} refused access as {USER}"):
        pull_image(basic_registry.ref("library/busybox:multi"), None, DirectorySink(tmp_path), progress=False)


def test_containers_auth_json(basic_registry: Pushed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = tmp_path / "run"
    (run / "containers").mkdir(parents=True)
    (run / "containers/auth.json").write_text(json.dumps({"auths": {basic_registry.reg.host: {"auth": _b64(USER, PASSWORD)}}}))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(run))
    img = pull_image(basic_registry.ref("library/busybox:single"), None, DirectorySink(tmp_path / "s"), progress=False)
    assert img.tag == "single"


def test_credential_helper(basic_registry: Pushed, tmp_path: Path, isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """credHelpers runs docker-credential-NAME get with the server name on stdin."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    seen = tmp_path / "helper-stdin"
    helper = bindir / "docker-credential-ocitest"
    helper.write_text(
        "#!/bin/sh\n"
        f'[ "$1" = get ] || exit 1\ncat > {seen}\n'
        f"echo '{{\"ServerURL\":\"x\",\"Username\":\"{USER}\",\"Secret\":\"{PASSWORD}\"}}'\n"
    )
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    cfg = isolated_env / ".docker/config.json"
    cfg.parent.mkdir()
    cfg.write_text(json.dumps({"credHelpers": {basic_registry.reg.host: "ocitest"}}))
    assert find_credentials(basic_registry.reg.host) == Credentials(USER, PASSWORD)
    assert seen.read_text() == basic_registry.reg.host
    cfg.write_text(json.dumps({"auths": {basic_registry.reg.host: {}}, "credsStore": "ocitest"}))
    img = pull_image(basic_registry.ref("library/busybox:single"), None, DirectorySink(tmp_path / "s"), progress=False)
    assert img.tag == "single"


def test_docker_hub_key_names(isolated_env: Path) -> None:
    cfg = isolated_env / ".docker/config.json"
    cfg.parent.mkdir()
    cfg.write_text(json.dumps({"auths": {"https://index.docker.io/v1/": {"auth": _b64("hub", "pw")}}}))
    assert find_credentials("docker.io") == Credentials("hub", "pw")
    assert find_credentials("quay.io") is None


def test_login_verifies_stores_0600_and_logout(basic_registry: Pushed, tmp_path: Path, isolated_env: Path) -> None:
    host = basic_registry.reg.host
    with pytest.raises(OcirunError, match="^unauthorized"):
        login(host, USER, "wrong")
    store = isolated_env / ".config/ocirun/auth.json"
    assert not store.exists()
    path = login(host, USER, PASSWORD)
    assert path == store
    assert stat.S_IMODE(store.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.parent.stat().st_mode) == 0o700
    assert json.loads(store.read_text())["auths"][host]["auth"] == _b64(USER, PASSWORD)
    assert not [p for p in store.parent.iterdir() if p.name != "auth.json"], "no temp file left"
    pull_image(basic_registry.ref("library/busybox:single"), None, DirectorySink(tmp_path), progress=False)
    assert auth.logout(host) is True
    assert auth.logout(host) is False
    assert stat.S_IMODE(store.stat().st_mode) == 0o600
    with pytest.raises(OcirunError, match="^unauthorized"):
        pull_image(basic_registry.ref("library/busybox:multi"), None, DirectorySink(tmp_path / "2"), progress=False)


def test_store_is_never_world_readable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Even with a permissive umask the file is created 0600 (mkstemp) and renamed into place."""
    monkeypatch.setenv("OCIRUN_AUTH_FILE", str(tmp_path / "cfg/auth.json"))
    old = os.umask(0)
    try:
        auth.store_credentials("reg.example", Credentials("u", "p"))
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "cfg/auth.json").stat().st_mode) == 0o600


# ------------------------------------------------------------------ Bearer tokens


def test_token_anonymous_pull_of_public_repo(token_registry: Pushed, tmp_path: Path) -> None:
    ts = token_registry.reg.token_server
    assert ts is not None
    n = len(ts.requests)
    img = pull_image(token_registry.ref("public/busybox:multi"), Platform.parse("arm64"), DirectorySink(tmp_path), progress=False)
    assert str(img.platform) == "linux/arm64/v8"
    new = ts.requests[n:]
    # index, manifest, config and 2 layers: one token for the one scope, cached
    assert new == [{"user": None, "scope": "repository:public/busybox:pull"}]


def test_token_private_repo_needs_credentials(token_registry: Pushed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(OcirunError, match="^unauthorized"):
        pull_image(token_registry.ref("library/busybox:multi"), None, DirectorySink(tmp_path), progress=False)
    monkeypatch.setenv("OCIRUN_AUTH_FILE", str(tmp_path / "auth.json"))
    with pytest.raises(OcirunError, match=f"^unauthorized: token server for {token_registry.reg.host} refused as {USER}$"):
        login(token_registry.reg.host, USER, "wrong")
    login(token_registry.reg.host, USER, PASSWORD)
    ts = token_registry.reg.token_server
    n = len(ts.requests)
    img = pull_image(token_registry.ref("library/busybox:multi"), None, DirectorySink(tmp_path / "s"), progress=False)
    assert img.tag == "multi"
    assert ts.requests[n:] == [{"user": USER, "scope": "repository:library/busybox:pull"}]


def test_token_refreshed_after_401(tmp_path: Path) -> None:
    """A token the registry stops accepting is replaced by a fresh one on the next 401."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    issued: list[str] = []

    class TokenHandler(BaseHTTPRequestHandler):
        def log_message(self, *a: object) -> None:
            pass

        def do_GET(self) -> None:
            tok = f"tok{len(issued)}"
            issued.append(self.path)
            body = json.dumps({"access_token": tok}).encode()  # access_token, not token
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    tsrv = ThreadingHTTPServer(("127.0.0.1", 0), TokenHandler)
    threading.Thread(target=tsrv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    realm = f"http://127.0.0.1:{tsrv.server_address[1]}/token"
    fake = FakeRegistry()
    try:
        layer = fake.add_blob(b"layer bytes")
        cfg = fake.add_blob(json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"diff_ids": []}}).encode())
        man = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
               "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **cfg},
               "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", **layer}]}
        fake.add_manifest(man, "application/vnd.oci.image.manifest.v1+json", tag="1")
        challenge = f'Bearer realm="{realm}",service="fake",scope="repository:x:pull"'
        # first manifest request: challenge; first blob request with tok0: rejected again
        fake.fail_first = {"/manifests/1": [(401, {"WWW-Authenticate": challenge})],
                           f"/blobs/{layer['digest']}": [(401, {"WWW-Authenticate": challenge})]}
        pull_image(f"{fake.host}/x:1", None, DirectorySink(tmp_path), progress=False)
        assert len(issued) == 2 and "service=fake" in issued[0] and "scope=repository%3Ax%3Apull" in issued[0]
        auths = [e.headers.get("Authorization") for e in fake.log if e.path.endswith(layer["digest"])]
        assert auths == ["Bearer tok0", "Bearer tok1"]
    finally:
        fake.stop()
        tsrv.shutdown()
        tsrv.server_close()


def test_identity_token_uses_oauth2_refresh_grant(tmp_path: Path, isolated_env: Path) -> None:
    """docker config `identitytoken`: POST grant_type=refresh_token to the realm."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from urllib.parse import parse_qs

    forms: list[dict[str, list[str]]] = []

    class TokenHandler(BaseHTTPRequestHandler):
        def log_message(self, *a: object) -> None:
            pass

        def do_POST(self) -> None:
            form = parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode())
            forms.append(form)
            ok = form.get("refresh_token") == ["rt-123"] and form.get("grant_type") == ["refresh_token"]
            body = json.dumps({"access_token": "at-1"} if ok else {}).encode()
            self.send_response(200 if ok else 401)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    tsrv = ThreadingHTTPServer(("127.0.0.1", 0), TokenHandler)
    threading.Thread(target=tsrv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    fake = FakeRegistry()
    try:
        cfg = fake.add_blob(json.dumps({"architecture": "amd64", "os": "linux"}).encode())
        man = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
               "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **cfg}, "layers": []}
        fake.add_manifest(man, "application/vnd.oci.image.manifest.v1+json", tag="1")
        realm = f"http://127.0.0.1:{tsrv.server_address[1]}/oauth2/token"
        fake.fail_first = {"/manifests/1": [(401, {"WWW-Authenticate": f'Bearer realm="{realm}",service="fake"'})]}
        docker_cfg = isolated_env / ".docker/config.json"
        docker_cfg.parent.mkdir()
        docker_cfg.write_text(json.dumps({"auths": {fake.host: {"auth": _b64("00000000-0000-0000-0000-000000000000", ""), "identitytoken": "rt-123"}}}))
        pull_image(f"{fake.host}/x:1", None, DirectorySink(tmp_path), progress=False)
        assert forms[0]["service"] == ["fake"] and forms[0]["scope"] == ["repository:x:pull"]
        assert [e.headers.get("Authorization") for e in fake.log if "/manifests/" in e.path] == [None, "Bearer at-1"]
    finally:
        fake.stop()
        tsrv.shutdown()
        tsrv.server_close()
