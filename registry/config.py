"""Registry settings: default registry, mirrors, insecure (plain HTTP) registries.

Read from `$XDG_CONFIG_HOME/ocirun/config.json` (default `~/.config/ocirun/config.json`;
`OCIRUN_CONFIG` names another file) with docker's daemon.json key names, then the
environment, which wins:

| config.json key          | environment                       | meaning |
|--------------------------|-----------------------------------|---------|
| `"default-registry"`     | `OCIRUN_DEFAULT_REGISTRY=HOST`    | short names (`debian`) resolve to HOST/library/debian instead of docker.io |
| `"registry-mirrors"`     | `OCIRUN_REGISTRY_MIRROR=H1,H2`    | Docker Hub content is fetched from these first (names stay docker.io/...) |
| `"insecure-registries"`  | `OCIRUN_INSECURE_REGISTRIES=H1,H2`| plain HTTP (and no TLS verification) for these hosts |
| `"additionalimagestores"`| `OCIRUN_ADDITIONAL_STORES=P1:P2`  | read-only image stores searched after the user's (podman's key; layers/sites.py) |
| `"insecure-loopback"`    | `OCIRUN_INSECURE_LOOPBACK=0`      | loopback registries are exempt from the TLS rules (default true; false treats them as any other host) |

Mirrors may be given as `host[:port]` or `http(s)://host[:port]`. Loopback registries
(`localhost`, 127.0.0.0/8, `[::1]`) may use plain HTTP, as docker allows, unless
`insecure-loopback` is false: then they follow the rules of a remote registry (which
lets the TLS rules be tested on 127.0.0.1).
"""

from __future__ import annotations

import ipaddress
import json
import os
from pathlib import Path

from ocirun.errors import OcirunError
from ocirun.util.records import dataclass, field

DOCKER_HUB = "docker.io"
DOCKER_HUB_ENDPOINT = "registry-1.docker.io"
DOCKER_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})


def config_dir() -> Path:
    """The user's ocirun config directory (`$XDG_CONFIG_HOME/ocirun`)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "ocirun"


def config_file() -> Path:
    """The config file: $OCIRUN_CONFIG, else config.json in the config directory."""
    return Path(os.environ.get("OCIRUN_CONFIG") or config_dir() / "config.json")


def read_config_file(path: Path | None = None) -> dict:
    """The config file's JSON object ({} when there is no file); one-line errors."""
    path = path or config_file()
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise OcirunError(f"cannot read config {path}: {exc}") from None
    if not isinstance(data, dict):
        raise OcirunError(f"config {path} is not a JSON object")
    return data


def _strip_scheme(host: str) -> str:
    for prefix in ("https://", "http://"):
        if host.startswith(prefix):
            host = host[len(prefix) :]
    return host.rstrip("/")


def _split_list(value: str) -> list[str]:
    return [v.strip() for v in value.replace(" ", ",").split(",") if v.strip()]


@dataclass
class RegistryConfig:
    """Resolved registry settings (see module docstring)."""

    default_registry: str = DOCKER_HUB
    mirrors: list[str] = field(default_factory=list)  # as given (may carry a scheme)
    insecure: list[str] = field(default_factory=list)
    insecure_loopback: bool = True

    @classmethod
    def load(cls, path: Path | None = None) -> RegistryConfig:
        """Config file, then environment overrides."""
        cfg = cls()
        data = read_config_file(path)
        if data:
            if data.get("default-registry"):
                cfg.default_registry = _strip_scheme(str(data["default-registry"]))
            cfg.mirrors = [str(m) for m in data.get("registry-mirrors") or []]
            cfg.insecure = [_strip_scheme(str(m)) for m in data.get("insecure-registries") or []]
            cfg.insecure_loopback = bool(data.get("insecure-loopback", True))
        env = os.environ
        if env.get("OCIRUN_DEFAULT_REGISTRY"):
            cfg.default_registry = _strip_scheme(env["OCIRUN_DEFAULT_REGISTRY"])
        if "OCIRUN_REGISTRY_MIRROR" in env:
            cfg.mirrors = _split_list(env["OCIRUN_REGISTRY_MIRROR"])
        if "OCIRUN_INSECURE_REGISTRIES" in env:
            cfg.insecure = [_strip_scheme(h) for h in _split_list(env["OCIRUN_INSECURE_REGISTRIES"])]
        if env.get("OCIRUN_INSECURE_LOOPBACK"):
            cfg.insecure_loopback = env["OCIRUN_INSECURE_LOOPBACK"].lower() not in ("0", "false", "no")
        if cfg.default_registry in DOCKER_HUB_ALIASES:
            cfg.default_registry = DOCKER_HUB
        return cfg

    def is_insecure(self, host: str) -> bool:
        """Plain HTTP allowed: loopback (unless insecure_loopback is off), or listed
        (with or without port)."""
        if self.insecure_loopback and is_loopback(host):
            return True
        hostname = split_host_port(host)[0]
        return host in self.insecure or hostname in self.insecure

    def base_url(self, host: str) -> str:
        """`https://HOST` or, for loopback/insecure hosts, `http://HOST`."""
        endpoint = DOCKER_HUB_ENDPOINT if host == DOCKER_HUB else host
        scheme = "http" if self.is_insecure(endpoint) else "https"
        return f"{scheme}://{endpoint}"

    def endpoints(self, host: str) -> list[str]:
        """Base URLs to try for a registry, mirrors first (Docker Hub only)."""
        urls: list[str] = []
        if host == DOCKER_HUB:
            for m in self.mirrors:
                if m.startswith(("http://", "https://")):
                    urls.append(m.rstrip("/"))
                else:
                    urls.append(self.base_url(m.rstrip("/")))
        urls.append(self.base_url(host))
        return urls


def split_host_port(host: str) -> tuple[str, str | None]:
    """`[::1]:5000` -> (`::1`, `5000`); `localhost` -> (`localhost`, None)."""
    if host.startswith("["):
        end = host.find("]")
        name = host[1:end]
        rest = host[end + 1 :]
        return name, rest[1:] if rest.startswith(":") else None
    if host.count(":") == 1:
        name, port = host.split(":")
        return name, port
    return host, None


def is_loopback(host: str) -> bool:
    """localhost, 127.0.0.0/8 or ::1 (with or without a port)."""
    name = split_host_port(host)[0].lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False
