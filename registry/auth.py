"""Registry authentication: credentials lookup and storage, Basic and Bearer token flows.

Credentials are looked up, first hit wins, in:
  1. ocirun's own store, written by `ocirun login`: `$XDG_CONFIG_HOME/ocirun/auth.json`
     (`OCIRUN_AUTH_FILE` overrides), mode 0600, docker's config.json format;
  2. `$REGISTRY_AUTH_FILE`, then `$XDG_RUNTIME_DIR/containers/auth.json` (podman/skopeo);
  3. `$DOCKER_CONFIG/config.json` or `~/.docker/config.json`: `credHelpers[host]`,
     inline `auths[host].auth` (base64 user:password) or `identitytoken` (OAuth2
     refresh token), then `credsStore`; helpers are run as `docker-credential-NAME get`
     with the server name on stdin.

The Bearer flow is docker's token spec: on a 401 with `WWW-Authenticate: Bearer realm=...,
service=..., scope=...`, GET the realm (with Basic credentials if we have any), take
`token` or `access_token`, cache it per scope, and fetch a new one on the next 401.

oras-py (installed) has TokenAuth/BasicAuth, but it keeps a single token for all scopes,
parses only quoted challenge parameters, reads only ~/.docker/config.json and raises
ValueError on failure; so this small flow is written here against requests directly.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from ocirun.errors import OcirunError
from ocirun.util.fs import atomic_write
from registry.config import DOCKER_HUB, DOCKER_HUB_ALIASES, config_dir
from registry.failures import short_reason

DOCKER_HUB_AUTH_KEY = "https://index.docker.io/v1/"


@dataclass(frozen=True)
class Credentials:
    """A username and password, or an OAuth2 refresh token (docker's `identitytoken`)."""

    username: str
    password: str
    identity_token: str | None = None

    def basic_header(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode()


# ---------------------------------------------------------------- credential files


def auth_file() -> Path:
    """ocirun's credential store (written by `ocirun login`)."""
    env = os.environ.get("OCIRUN_AUTH_FILE")
    return Path(env) if env else config_dir() / "auth.json"


def _candidate_files() -> list[Path]:
    files = [auth_file()]
    if os.environ.get("REGISTRY_AUTH_FILE"):
        files.append(Path(os.environ["REGISTRY_AUTH_FILE"]))
    if os.environ.get("XDG_RUNTIME_DIR"):
        files.append(Path(os.environ["XDG_RUNTIME_DIR"]) / "containers" / "auth.json")
    docker_dir = os.environ.get("DOCKER_CONFIG") or str(Path.home() / ".docker")
    files.append(Path(docker_dir) / "config.json")
    return files


def _keys_for(registry: str) -> list[str]:
    """Keys a registry may be stored under in an `auths` map."""
    if registry in DOCKER_HUB_ALIASES:
        hosts = [DOCKER_HUB_AUTH_KEY, "docker.io", "index.docker.io", "registry-1.docker.io"]
    else:
        hosts = [registry]
    keys = []
    for h in hosts:
        keys += [h, f"https://{h}", f"http://{h}", f"https://{h}/v1/", f"https://{h}/v2/"]
    return list(dict.fromkeys(keys))


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise OcirunError(f"cannot read credentials file {path}: {exc}") from None
    return data if isinstance(data, dict) else None


def _decode_auth(value: str, where: Path) -> Credentials:
    try:
        user, _, password = base64.b64decode(value).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        raise OcirunError(f"bad base64 'auth' entry in {where}") from None
    return Credentials(user, password)


def _helper_get(helper: str, server: str) -> Credentials | None:
    """Run `docker-credential-HELPER get` (docker's credential helper protocol)."""
    binary = f"docker-credential-{helper}"
    try:
        proc = subprocess.run(
            [binary, "get"], input=server.encode(), capture_output=True, timeout=60, check=False
        )
    except FileNotFoundError:
        raise OcirunError(f"credential helper {binary} not found in PATH") from None
    except subprocess.TimeoutExpired:
        raise OcirunError(f"credential helper {binary} timed out") from None
    if proc.returncode != 0:
        return None  # "credentials not found in native keychain"
    try:
        payload = json.loads(proc.stdout)
        user, secret = str(payload["Username"]), str(payload["Secret"])
        if user == "<token>":  # docker's convention for an identity token from a helper
            return Credentials("", "", identity_token=secret)
        return Credentials(user, secret)
    except (ValueError, KeyError, TypeError):
        raise OcirunError(f"credential helper {binary} gave an unreadable answer") from None


def find_credentials(registry: str) -> Credentials | None:
    """Credentials for `registry` (a host[:port]; docker.io for Docker Hub), or None."""
    keys = _keys_for(registry)
    for path in _candidate_files():
        data = _read_json(path)
        if not data:
            continue
        helpers = data.get("credHelpers") or {}
        for key in keys:
            if key in helpers:
                creds = _helper_get(str(helpers[key]), key)
                if creds:
                    return creds
        auths = data.get("auths") or {}
        for key in keys:
            entry = auths.get(key)
            if isinstance(entry, dict) and entry.get("identitytoken"):
                user = _decode_auth(str(entry["auth"]), path).username if entry.get("auth") else ""
                return Credentials(user, "", identity_token=str(entry["identitytoken"]))
            if isinstance(entry, dict) and entry.get("auth"):
                return _decode_auth(str(entry["auth"]), path)
            if isinstance(entry, dict) and entry.get("username") and entry.get("password"):
                return Credentials(str(entry["username"]), str(entry["password"]))
        if data.get("credsStore"):
            server = DOCKER_HUB_AUTH_KEY if registry in DOCKER_HUB_ALIASES else registry
            creds = _helper_get(str(data["credsStore"]), server)
            if creds:
                return creds
    return None


def _write_private(path: Path, data: dict[str, Any]) -> None:
    """Write JSON atomically, 0600 from the first byte, in a 0700 directory if it is new."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    atomic_write(path, (json.dumps(data, indent=2) + "\n").encode(), mode=0o600)


def store_credentials(registry: str, creds: Credentials) -> Path:
    """Save credentials in ocirun's auth file (0600); returns the file."""
    path = auth_file()
    data = _read_json(path) or {}
    auths = data.setdefault("auths", {})
    key = DOCKER_HUB_AUTH_KEY if registry in DOCKER_HUB_ALIASES else registry
    raw = f"{creds.username}:{creds.password}".encode()
    auths[key] = {"auth": base64.b64encode(raw).decode()}
    _write_private(path, data)
    return path


def logout(registry: str) -> bool:
    """Forget stored credentials for `registry`; False if there were none."""
    registry = DOCKER_HUB if registry in DOCKER_HUB_ALIASES else registry
    path = auth_file()
    data = _read_json(path) or {}
    auths = data.get("auths") or {}
    removed = [k for k in _keys_for(registry) if auths.pop(k, None) is not None]
    if removed:
        _write_private(path, data)
    return bool(removed)


# ---------------------------------------------------------------- challenges and tokens

_PARAM_RE = re.compile(r'([A-Za-z_][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]+))')


@dataclass(frozen=True)
class Challenge:
    """A parsed WWW-Authenticate header."""

    scheme: str  # "basic" | "bearer" (lower case)
    params: dict[str, str]


def parse_challenge(header: str) -> Challenge | None:
    """`Bearer realm="...",service="...",scope="a,b"` -> Challenge."""
    header = header.strip()
    if not header:
        return None
    scheme, _, rest = header.partition(" ")
    params = {m.group(1).lower(): (m.group(2) if m.group(2) is not None else m.group(3)) for m in _PARAM_RE.finditer(rest)}
    return Challenge(scheme.lower(), params)


class Authenticator:
    """Adds the right Authorization header per request scope; learns from 401 answers."""

    def __init__(self, registry: str, session: requests.Session, credentials: Credentials | None, verify: bool = True):
        self.registry = registry
        self.session = session
        self.credentials = credentials
        self.verify = verify
        self.challenge: Challenge | None = None
        self._tokens: dict[str, str] = {}
        self._lock = threading.Lock()

    def header(self, scope: str) -> dict[str, str]:
        """The Authorization header to send for `scope`, if we know one."""
        ch = self.challenge
        if ch is None:
            return {}
        if ch.scheme == "basic" and self.credentials and not self.credentials.identity_token:
            return {"Authorization": self.credentials.basic_header()}
        with self._lock:
            token = self._tokens.get(scope)
        return {"Authorization": f"Bearer {token}"} if token else {}

    def on_unauthorized(self, response: requests.Response, scope: str) -> bool:
        """Handle a 401: parse the challenge, fetch a fresh token. True if worth retrying."""
        ch = parse_challenge(response.headers.get("WWW-Authenticate", ""))
        if ch is None:
            return False
        self.challenge = ch
        if ch.scheme == "basic":
            return self.credentials is not None and not self.credentials.identity_token
        if ch.scheme != "bearer" or not ch.params.get("realm"):
            return False
        token = self.fetch_token(ch, ch.params.get("scope") or scope)
        with self._lock:
            self._tokens[scope] = token
        return True

    def fetch_token(self, ch: Challenge, scope: str | None) -> str:
        """GET the token realm; `token` or `access_token` from its JSON answer."""
        params: dict[str, str | list[str]] = {}
        if ch.params.get("service"):
            params["service"] = ch.params["service"]
        if scope:  # several scopes (a push that mounts from another repository): one parameter each
            params["scope"] = scope.split()
        headers = {"Accept": "application/json"}
        realm = ch.params["realm"]
        creds = self.credentials
        try:
            if creds and creds.identity_token:
                # OAuth2 refresh-token grant, as docker does with an `identitytoken`
                # OAuth2's form takes the scopes space-separated, in one field
                form = {**params, **({"scope": scope} if scope else {}), "grant_type": "refresh_token", "refresh_token": creds.identity_token, "client_id": "ocirun"}
                resp = self.session.post(realm, data=form, headers=headers, timeout=(10, 60), verify=self.verify)
            else:
                if creds:
                    headers["Authorization"] = creds.basic_header()
                resp = self.session.get(realm, params=params, headers=headers, timeout=(10, 60), verify=self.verify)
        except requests.RequestException as exc:
            raise OcirunError(f"cannot reach token server {realm}: {short_reason(exc)}") from None
        if resp.status_code in (401, 403):
            who = f" as {self.credentials.username or 'identity token'}" if self.credentials else " (anonymous)"
            raise OcirunError(f"unauthorized: token server for {self.registry} refused{who}")
        if resp.status_code != 200:
            raise OcirunError(f"token server {realm} answered HTTP {resp.status_code}")
        try:
            data = resp.json()
        except ValueError:
            raise OcirunError(f"token server {realm} gave no JSON") from None
        token = data.get("token") or data.get("access_token")
        if not token:
            raise OcirunError(f"token server {realm} gave no token")
        return str(token)
