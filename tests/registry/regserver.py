"""Real registries and OCI layouts for tests (reusable by the image-store and runner tests).

    from tests.registry.regserver import start_registry, build_layout, push, busybox_images

    reg = start_registry(tmp_path, auth="none")          # or "basic", "token"
    layout = build_layout(tmp_path / "layout", busybox_images(), tag="1")
    push(layout, reg, "library/busybox:1")               # skopeo copy --all
    ... pull_image(f"{reg.host}/library/busybox:1", ...)
    reg.stop()

`start_registry` runs Debian's docker-registry (distribution 2.8) on 127.0.0.1 on a
free port with storage in a temporary directory. auth="basic" adds an htpasswd file
(bcrypt); auth="token" adds a Bearer token server (this module's TokenServer) on
another loopback port that signs RS256 JWTs with a self-signed certificate given to
the registry as `rootcertbundle` and sent in the token's `x5c` header.
Users: USER/PASSWORD may push and pull everything; in token mode anonymous
clients may pull repositories under `public/`.
"""

from __future__ import annotations

import base64
import datetime as _dt
import gzip
import hashlib
import io
import json
import os
import shutil
import socket
import subprocess
import tarfile
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests

REGISTRY_BIN = "/usr/bin/docker-registry"
USER = "alice"
PASSWORD = "wonderland-42"
FIXTURES = Path(os.environ.get("OCIRUN_TEST_FIXTURES", "/var/tmp/ocirun-fixtures"))
HOST_BUSYBOX = Path("/bin/busybox")
DEBIAN_ARCH = {"arm": "armhf", "386": "i386", "ppc64le": "ppc64el"}

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = {
    "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "none": "application/vnd.oci.image.layer.v1.tar",
    "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
}


def free_port(ip: str = "127.0.0.1") -> int:
    """A TCP port free on `ip` right now."""
    with socket.socket() as s:
        s.bind((ip, 0))
        return s.getsockname()[1]


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------- token server


class TokenServer:
    """docker token-spec endpoint: GET /token?service=S&scope=repository:R:pull,push."""

    def __init__(self, tmp: Path, service: str, users: dict[str, str], public_prefix: str = "public/"):
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID

        self.service = service
        self.issuer = "ocirun-test-issuer"
        self.users = users
        self.public_prefix = public_prefix
        self.requests: list[dict[str, Any]] = []  # (user, scope) of every token request
        self.token_ttl = 300
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ocirun test token signer")])
        now = _dt.datetime.now(_dt.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _dt.timedelta(days=1))
            .not_valid_after(now + _dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.cert_path = tmp / "token-cert.pem"
        self.cert_path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        self._x5c = base64.b64encode(self.cert.public_bytes(serialization.Encoding.DER)).decode()
        self._key_pem = self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                server._handle(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/token"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def _user(self, h: BaseHTTPRequestHandler) -> str | None | bool:
        """The authenticated user, None for anonymous, False for bad credentials."""
        header = h.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return None
        user, _, pw = base64.b64decode(header[6:]).decode().partition(":")
        return user if self.users.get(user) == pw else False

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        import jwt

        q = parse_qs(urlsplit(h.path).query)
        user = self._user(h)
        scopes = q.get("scope", [])
        self.requests.append({"user": user, "scope": " ".join(scopes)})
        if user is False:
            h.send_response(401)
            h.send_header("Content-Type", "application/json")
            h.end_headers()
            h.wfile.write(b'{"details":"bad credentials"}')
            return
        access = []
        for scope in " ".join(scopes).split():
            typ, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            wanted = [a for a in actions.split(",") if a]
            if user:
                granted = wanted
            elif name.startswith(self.public_prefix):
                granted = [a for a in wanted if a == "pull"]
            else:
                granted = []
            access.append({"type": typ, "name": name, "actions": granted})
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": user or "",
            "aud": self.service,
            "exp": now + self.token_ttl,
            "nbf": now - 10,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": access,
        }
        token = jwt.encode(claims, self._key_pem, algorithm="RS256", headers={"x5c": [self._x5c]})
        body = json.dumps({"token": token, "expires_in": self.token_ttl}).encode()
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# ---------------------------------------------------------------- registry


@dataclass
class Registry:
    """A running docker-registry: `url` is http://127.0.0.1:PORT, `host` is 127.0.0.1:PORT."""

    url: str
    host: str
    storage: Path
    auth: str
    proc: subprocess.Popen[bytes]
    token_server: TokenServer | None = None
    user: str = USER
    password: str = PASSWORD
    log: Path | None = None
    cert: Path | None = None  # the self-signed certificate of a TLS registry

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.token_server:
            self.token_server.stop()

    def blob_data_path(self, digest: str) -> Path:
        """Where distribution keeps a blob's bytes (to corrupt it in hostile tests)."""
        hexd = digest.split(":", 1)[1]
        return self.storage / "docker/registry/v2/blobs/sha256" / hexd[:2] / hexd / "data"

    @property
    def creds(self) -> str:
        return f"{self.user}:{self.password}"


def self_signed_cert(tmp: Path, ip: str) -> tuple[Path, Path]:
    """A self-signed server certificate for `ip` (and localhost): (cert.pem, key.pem)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ip)])
    now = _dt.datetime.now(_dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _dt.timedelta(days=1))
        .not_valid_after(now + _dt.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip)), x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "tls-cert.pem", tmp / "tls-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return cert_path, key_path


def _die_with_parent() -> None:
    """PR_SET_PDEATHSIG: a registry never outlives a killed test run."""
    import ctypes
    import signal

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


def start_registry(tmp: Path, auth: str = "none", port: int | None = None, *, tls: bool = False, ip: str = "127.0.0.1",
                   readonly: bool = False) -> Registry:
    """Start docker-registry (auth: none | basic | token) on ip:port; wait until it answers.

    tls=True serves HTTPS with a self-signed certificate (Registry.cert is its PEM);
    readonly=True refuses every push (distribution's maintenance mode).
    """
    tmp = Path(tmp)
    tmp.mkdir(parents=True, exist_ok=True)
    port = port or free_port(ip)
    storage = tmp / "storage"
    storage.mkdir(exist_ok=True)
    cfg: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "error", "accesslog": {"disabled": True}},
        "storage": {
            "filesystem": {"rootdirectory": str(storage)},
            "delete": {"enabled": True},
            "maintenance": {"uploadpurging": {"enabled": False}, "readonly": {"enabled": readonly}},
        },
        "http": {"addr": f"{ip}:{port}", "secret": uuid.uuid4().hex},
    }
    cert = None
    if tls:
        cert, key = self_signed_cert(tmp, ip)
        cfg["http"]["tls"] = {"certificate": str(cert), "key": str(key)}
    token_server = None
    if auth == "basic":
        out = subprocess.run(["htpasswd", "-Bbn", USER, PASSWORD], check=True, capture_output=True, text=True).stdout
        (tmp / "htpasswd").write_text(out.strip() + "\n")
        cfg["auth"] = {"htpasswd": {"realm": "ocirun-test", "path": str(tmp / "htpasswd")}}
    elif auth == "token":
        service = f"ocirun-test-registry-{port}"
        token_server = TokenServer(tmp, service, {USER: PASSWORD})
        cfg["auth"] = {
            "token": {
                "realm": token_server.url,
                "service": service,
                "issuer": token_server.issuer,
                "rootcertbundle": str(token_server.cert_path),
            }
        }
    elif auth != "none":
        raise ValueError(f"auth must be none, basic or token, not {auth!r}")
    # JSON is YAML: no yaml dependency needed.
    (tmp / "config.yml").write_text(json.dumps(cfg, indent=2))
    log = tmp / "registry.log"
    with open(log, "wb") as logf:
        proc = subprocess.Popen([REGISTRY_BIN, "serve", str(tmp / "config.yml")], stdout=logf, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
    scheme = "https" if tls else "http"
    reg = Registry(f"{scheme}://{ip}:{port}", f"{ip}:{port}", storage, auth, proc, token_server, log=log, cert=cert)
    deadline = time.monotonic() + 20
    while True:
        try:
            r = requests.get(reg.url + "/v2/", timeout=2, verify=str(cert) if cert else True)
            if r.status_code in (200, 401):
                return reg
        except requests.RequestException:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            reg.stop()
            raise RuntimeError(f"docker-registry did not start: {log.read_text()[-2000:]}")
        time.sleep(0.05)


def push(layout: Path, registry: Registry | str, repo_tag: str, *, tag: str | None = None, creds: str | None = None, docker_format: bool = False) -> None:
    """skopeo copy --all oci:LAYOUT:TAG docker://HOST/REPO:TAG.

    Digests are preserved, unless `docker_format` converts to Docker's media types
    (manifest list + schema 2; skopeo reads only OCI types from a layout's index.json).
    """
    host = registry.host if isinstance(registry, Registry) else registry
    if creds is None and isinstance(registry, Registry) and registry.auth != "none":
        creds = registry.creds
    src_tag = tag or repo_tag.rpartition(":")[2]
    cmd = [
        "skopeo", "--insecure-policy", "copy", "--all", "--quiet",
        *(["--format", "v2s2"] if docker_format else ["--preserve-digests"]),
        "--dest-tls-verify=false", f"oci:{layout}:{src_tag}", f"docker://{host}/{repo_tag}",
    ]
    if creds:
        cmd[3:3] = ["--dest-creds", creds]
    env = dict(os.environ)
    env.setdefault("HOME", tempfile.gettempdir())
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode != 0:
        raise RuntimeError(f"skopeo push failed: {res.stderr.strip()}")


# ---------------------------------------------------------------- layouts


@dataclass
class ImageSpec:
    """One image: a platform ('linux/arm64/v8'), layers and config additions.

    A layer is a dict {path: content} (bytes -> file 0755, ('symlink', target),
    ('dir',), ('file', bytes, mode)) or raw tar bytes (used as is).
    """

    platform: str
    layers: list[dict[str, Any] | bytes]
    config: dict[str, Any] = field(default_factory=dict)
    compression: str = "gzip"  # gzip | none | zstd
    docker_types: bool = False  # Docker v2 media types instead of OCI


def make_tar(entries: dict[str, Any]) -> bytes:
    """A deterministic tar from a {path: content} dict (see ImageSpec)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, content in entries.items():
            info = tarfile.TarInfo(name)
            info.mtime = 0
            data = None
            if isinstance(content, bytes):
                info.mode, data = 0o755, content
            elif content[0] == "symlink":
                info.type, info.linkname, info.mode = tarfile.SYMTYPE, content[1], 0o777
            elif content[0] == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
            elif content[0] == "file":
                data, info.mode = content[1], content[2]
            else:
                raise ValueError(f"bad entry {name}: {content!r}")
            if data is not None:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return buf.getvalue()


def _compress(data: bytes, how: str) -> bytes:
    if how == "gzip":
        return gzip.compress(data, compresslevel=1, mtime=0)
    if how == "zstd":
        import zstandard

        return zstandard.ZstdCompressor().compress(data)
    return data


class LayoutWriter:
    """Writes blobs into an OCI image layout directory."""

    def __init__(self, dest: Path):
        self.dest = Path(dest)
        (self.dest / "blobs/sha256").mkdir(parents=True, exist_ok=True)
        (self.dest / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')

    def blob(self, data: bytes, media_type: str) -> dict[str, Any]:
        d = sha256(data)
        (self.dest / "blobs/sha256" / d.split(":")[1]).write_bytes(data)
        return {"mediaType": media_type, "digest": d, "size": len(data)}

    def image(self, spec: ImageSpec) -> dict[str, Any]:
        """Write one image's layers, config and manifest; returns the manifest descriptor."""
        parts = spec.platform.split("/")
        plat = {"os": parts[0], "architecture": parts[1]}
        if len(parts) > 2:
            plat["variant"] = parts[2]
        layer_descs, diff_ids = [], []
        for layer in spec.layers:
            tar = layer if isinstance(layer, bytes) else make_tar(layer)
            diff_ids.append(sha256(tar))
            if spec.docker_types:
                mt = "application/vnd.docker.image.rootfs.diff.tar.gzip" if spec.compression == "gzip" else "application/vnd.docker.image.rootfs.diff.tar"
            else:
                mt = OCI_LAYER[spec.compression]
            layer_descs.append(self.blob(_compress(tar, spec.compression), mt))
        config = {
            "created": "2024-01-01T00:00:00Z",
            **plat,
            "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"], "Cmd": ["/bin/sh"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": [{"created": "2024-01-01T00:00:00Z", "created_by": "ocirun tests"} for _ in diff_ids],
        }
        for k, v in spec.config.items():
            config[k] = v
        cfg_type = "application/vnd.docker.container.image.v1+json" if spec.docker_types else OCI_CONFIG
        man_type = "application/vnd.docker.distribution.manifest.v2+json" if spec.docker_types else OCI_MANIFEST
        cfg_desc = self.blob(json.dumps(config, sort_keys=True).encode(), cfg_type)
        manifest = {"schemaVersion": 2, "mediaType": man_type, "config": cfg_desc, "layers": layer_descs}
        desc = self.blob(json.dumps(manifest, indent=2).encode(), man_type)
        desc["platform"] = plat
        return desc

    def write_index(self, entries: list[dict[str, Any]]) -> None:
        (self.dest / "index.json").write_text(json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}, indent=2))


def build_layout(dest: Path, images: list[ImageSpec], tag: str = "latest", *, multi: bool | None = None, docker_list: bool = False) -> Path:
    """An OCI image layout at `dest` whose `tag` names the images (an index if several).

    `multi=None` makes an index only for more than one image; `docker_list` gives the
    index Docker's manifest-list media type.
    """
    w = LayoutWriter(dest)
    descs = [w.image(spec) for spec in images]
    if multi is None:
        multi = len(descs) > 1
    if multi:
        mt = "application/vnd.docker.distribution.manifest.list.v2+json" if docker_list else OCI_INDEX
        body = json.dumps({"schemaVersion": 2, "mediaType": mt, "manifests": descs}, indent=2).encode()
        top = w.blob(body, mt)
    else:
        top = {k: v for k, v in descs[0].items() if k != "platform"}
    top["annotations"] = {"org.opencontainers.image.ref.name": tag}
    existing = []
    if (Path(dest) / "index.json").exists():
        old = json.loads((Path(dest) / "index.json").read_text())
        existing = [m for m in old.get("manifests", []) if (m.get("annotations") or {}).get("org.opencontainers.image.ref.name") != tag]
    w.write_index(existing + [top])
    return Path(dest)


# ---------------------------------------------------------------- busybox


def _lists_signature() -> str:
    """Changes whenever apt's package lists change (apt-get update)."""
    h = hashlib.sha256()
    lists = Path("/var/lib/apt/lists")
    for p in sorted(lists.iterdir()) if lists.is_dir() else []:
        if p.is_file():
            st = p.stat()
            h.update(f"{p.name} {st.st_size} {st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def _package_version(pkg: str) -> str:
    """Candidate version of a package; memoised per apt lists state (apt-cache takes ~5-9 s here)."""
    sig = _lists_signature()
    safe = pkg.replace(":", "_")
    for root in (FIXTURES / "registry", Path(f"/var/tmp/ocirun-fixtures-{os.getuid()}/registry")):
        try:
            memo = root / f"{safe}.version"
            if memo.is_file():
                got_sig, _, version = memo.read_text().strip().partition(" ")
                if got_sig == sig and version:
                    return version
        except OSError:
            pass
    out = subprocess.run(["apt-cache", "show", "--no-all-versions", pkg], capture_output=True, text=True, check=True).stdout
    version = next((ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Version:")), "")
    if not version:
        raise RuntimeError(f"apt-cache knows no version of {pkg}")
    root = _cache_root()
    tmp = root / f".{safe}.version.{os.getpid()}"
    tmp.write_text(f"{sig} {version}\n")
    os.replace(tmp, root / f"{safe}.version")
    return version


def _cache_root() -> Path:
    """FIXTURES/registry if writable (or creatable), else a per-user cache under /var/tmp."""
    root = FIXTURES / "registry"
    try:
        root.mkdir(parents=True, exist_ok=True)
        if os.access(root, os.W_OK):
            return root
    except OSError:
        pass
    root = Path(f"/var/tmp/ocirun-fixtures-{os.getuid()}/registry")
    root.mkdir(parents=True, exist_ok=True)
    return root


def foreign_busybox(arch: str = "arm64") -> Path:
    """busybox from busybox-static:ARCH (apt-get download + dpkg-deb -x), cached by version."""
    version = _package_version(f"busybox-static:{arch}")
    name = f"busybox-static_{version.replace(':', '%3a')}_{arch}/busybox"
    for root in (FIXTURES / "registry", Path(f"/var/tmp/ocirun-fixtures-{os.getuid()}/registry")):
        try:
            if (root / name).is_file():
                return root / name
        except OSError:
            pass
    root = _cache_root()
    final = root / name
    with tempfile.TemporaryDirectory(dir=root) as work:
        subprocess.run(["apt-get", "download", "-q", f"busybox-static:{arch}"], cwd=work, check=True, capture_output=True)
        deb = next(Path(work).glob("*.deb"))
        subprocess.run(["dpkg-deb", "-x", str(deb), str(Path(work) / "x")], check=True)
        (Path(work) / "out").mkdir()
        shutil.copy2(Path(work) / "x/bin/busybox", Path(work) / "out/busybox")
        os.chmod(Path(work) / "out", 0o755)
        try:
            os.rename(Path(work) / "out", final.parent)
        except OSError:
            if not final.is_file():  # lost a race with another test process: fine if it won
                raise
    return final


def busybox_layer(busybox: Path) -> dict[str, Any]:
    """A layer with bin/busybox and a few applet symlinks."""
    entries: dict[str, Any] = {"bin/": ("dir",), "bin/busybox": busybox.read_bytes()}
    for applet in ("sh", "ls", "cat", "echo", "uname", "true"):
        entries[f"bin/{applet}"] = ("symlink", "busybox")
    entries["etc/"] = ("dir",)
    entries["etc/passwd"] = ("file", b"root:x:0:0:root:/root:/bin/sh\n", 0o644)
    return entries


def busybox_images(platforms: tuple[str, ...] = ("linux/amd64", "linux/arm64/v8")) -> list[ImageSpec]:
    """busybox-static images: amd64 from /bin/busybox, others from Debian's packages."""
    specs = []
    for p in platforms:
        arch = p.split("/")[1]
        bb = HOST_BUSYBOX if arch == "amd64" else foreign_busybox(DEBIAN_ARCH.get(arch, arch))
        specs.append(ImageSpec(p, [busybox_layer(bb), {"etc/hostname": ("file", f"{arch}\n".encode(), 0o644)}]))
    return specs


# ---------------------------------------------------------------- archives


def tar_dir(src: Path, dest: Path) -> Path:
    """Tar a directory's contents (an OCI layout -> an oci-archive)."""
    with tarfile.open(dest, "w") as tar:
        for p in sorted(Path(src).rglob("*")):
            tar.add(p, arcname=str(p.relative_to(src)), recursive=False)
    return dest


def build_docker_archive(dest: Path, images: list[tuple[ImageSpec, list[str]]], *, style: str = "legacy") -> Path:
    """A `docker save` tarball of uncompressed layers with RepoTags.

    style="legacy": docker < 25 (HEX/layer.tar, HEX.json config, `repositories`; a layer
    used twice is a symlink to its first copy, as docker writes it); style="oci":
    docker >= 25 (blobs/sha256/..., manifest.json + index.json + oci-layout).
    """
    entries: dict[str, Any] = {}
    manifest, repositories = [], {}
    seen: dict[str, str] = {}
    for spec, tags in images:
        layer_paths, diff_ids = [], []
        for layer in spec.layers:
            tar = layer if isinstance(layer, bytes) else make_tar(layer)
            diff = sha256(tar)
            diff_ids.append(diff)
            hexd = diff.split(":")[1]
            if style == "oci":
                path = f"blobs/sha256/{hexd}"
                entries[path] = ("file", tar, 0o644)
            else:
                path = f"{hashlib.sha256(hexd.encode() + spec.platform.encode()).hexdigest()}/layer.tar"
                if diff in seen:
                    entries[path] = ("symlink", "../" + seen[diff])
                else:
                    entries[path] = ("file", tar, 0o644)
                    seen[diff] = path
                entries[posixpath_dir(path) + "/VERSION"] = ("file", b"1.0", 0o644)
            layer_paths.append(path)
        parts = spec.platform.split("/")
        config = {"architecture": parts[1], "os": parts[0], "rootfs": {"type": "layers", "diff_ids": diff_ids},
                  "config": {"Cmd": ["/bin/sh"]}, **spec.config}
        if len(parts) > 2:
            config["variant"] = parts[2]
        cfg = json.dumps(config).encode()
        chex = hashlib.sha256(cfg).hexdigest()
        cpath = f"blobs/sha256/{chex}" if style == "oci" else f"{chex}.json"
        entries[cpath] = ("file", cfg, 0o644)
        manifest.append({"Config": cpath, "RepoTags": tags, "Layers": layer_paths})
        for t in tags:
            repo, _, tag = t.rpartition(":")
            repositories.setdefault(repo, {})[tag] = layer_paths[-1].split("/")[-2 if style != "oci" else -1]
    entries["manifest.json"] = ("file", json.dumps(manifest).encode(), 0o644)
    if style == "oci":
        entries["oci-layout"] = ("file", b'{"imageLayoutVersion":"1.0.0"}', 0o644)
        entries["index.json"] = ("file", json.dumps({"schemaVersion": 2, "manifests": []}).encode(), 0o644)
    else:
        entries["repositories"] = ("file", json.dumps(repositories).encode(), 0o644)
    Path(dest).write_bytes(make_tar(entries))
    return Path(dest)


def posixpath_dir(p: str) -> str:
    return p.rsplit("/", 1)[0]
