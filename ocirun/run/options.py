"""Docker's `run`/`create` options, parsed into plain dataclasses.

Everything here is pure: strings in, dataclasses out, `OcirunError(…, 125)` for
a malformed value (docker's exit code for a bad flag). The click command in
ocirun/cli/run_cmds.py only collects the raw strings and calls `build_options`.
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path

from ocirun.errors import EXIT_OCIRUN, OcirunError
from ocirun.run.gpus import GpuRequest, parse_gpus
from ocirun.util.fmt import int_pair
from ocirun.util.records import dataclass, field, fields

# Bare platform words users type, mapped to os/arch[/variant] (docker accepts these too).
_ARCH_ALIASES: dict[str, str] = {
    "x86_64": "amd64",
    "x86-64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "arm": "arm/v7",
    "armv7l": "arm/v7",
    "armhf": "arm/v7",
    "armv7": "arm/v7",
    "armv6l": "arm/v6",
    "armel": "arm/v6",
    "i386": "386",
    "i686": "386",
    "386": "386",
    "ppc64le": "ppc64le",
    "ppc64el": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
}

PULL_POLICIES = ("always", "missing", "never")

# Flags that need privileges, cgroups or a network namespace: accepted, warned
# about once, ignored. name -> takes a value.
IGNORED_FLAGS: dict[str, bool] = {
    "--memory": True,
    "-m": True,
    "--memory-swap": True,
    "--memory-reservation": True,
    "--memory-swappiness": True,
    "--kernel-memory": True,
    "--cpus": True,
    "--cpu-shares": True,
    "-c": True,
    "--cpuset-cpus": True,
    "--cpuset-mems": True,
    "--cpu-period": True,
    "--cpu-quota": True,
    "--cpu-rt-period": True,
    "--cpu-rt-runtime": True,
    "--blkio-weight": True,
    "--device-read-bps": True,
    "--device-write-bps": True,
    "--privileged": False,
    "--cap-add": True,
    "--cap-drop": True,
    "--security-opt": True,
    "--ulimit": True,
    "--pids-limit": True,
    "--device": True,
    "--device-cgroup-rule": True,
    "--oom-kill-disable": False,
    "--oom-score-adj": True,
    "--restart": True,
    "--init": False,
    "--ipc": True,
    "--pid": True,
    "--uts": True,
    "--userns": True,
    "--cgroupns": True,
    "--cgroup-parent": True,
    "--shm-size": True,
    "--sysctl": True,
    "--group-add": True,
    "--label": True,
    "-l": True,
    "--label-file": True,
    "--log-driver": True,
    "--log-opt": True,
    "--tmpfs": True,
    "--read-only": False,
    "--runtime": True,
    "--isolation": True,
    "--ip": True,
    "--ip6": True,
    "--mac-address": True,
    "--network-alias": True,
    "--link": True,
    "--dns-search": True,
    "--dns-option": True,
    "--stop-timeout": True,
    "--health-cmd": True,
    "--health-interval": True,
    "--health-retries": True,
    "--health-timeout": True,
    "--health-start-period": True,
    "--no-healthcheck": False,
    "--volume-driver": True,
    "--volumes-from": True,
    "--storage-opt": True,
    "--expose": True,
    "--attach": True,
    "-a": True,
    "--sig-proxy": True,
    "--disable-content-trust": False,
    "--quiet": False,
    "-q": False,
}

# The ignored flags that would need privileges, cgroups or namespaces (the others
# are docker features ocirun simply does not have: labels, restart policies, ...).
_NEEDS_PRIVILEGE = frozenset(
    f for f in IGNORED_FLAGS
    if f.startswith(("--memory", "--kernel-memory", "--cpu", "--blkio", "--device", "--cap-", "--security",
                     "--ulimit", "--pids", "--oom", "--ipc", "--pid", "--uts", "--userns", "--cgroup",
                     "--shm", "--sysctl", "--privileged", "--group-add", "--runtime",
                     "--isolation", "--ip", "--mac", "--storage", "--read-only"))
) | {"-m", "-c"}

# The two ways of asking for the host network, which is what ocirun always gives.
_HOST_NETWORKS = ("host", "default", "bridge")


@dataclass(frozen=True)
class Volume:
    """A bind of a host path into the guest (`-v`, `--mount type=bind`)."""

    host: str
    guest: str
    readonly: bool = False
    create: bool = field(default=False, compare=False)  # `-v` makes a missing host directory (docker does); `--mount` refuses


@dataclass(frozen=True)
class Publish:
    """`-p [ip:]hostPort:containerPort[/proto]`; host_port 0 means "pick a free one"."""

    container_port: int
    host_port: int = 0
    host_ip: str = ""
    proto: str = "tcp"


@dataclass(kw_only=True)
class _AsGiven:
    """The options that keep their type from the command line to RunOptions
    (a str|None one is checked by its parser in _PARSERS, when given)."""

    platform: str | None = None
    publish_all: bool = False
    netcoop: bool = False
    workdir: str | None = None
    user: str | None = None
    entrypoint: str | None = None  # None: not given; "": reset the image's
    hostname: str | None = None
    kernel_release: str | None = None
    rm: bool = False
    name: str | None = None
    detach: bool = False
    interactive: bool = False
    tty: bool = False
    share_tmp: bool = False
    stop_signal: str | None = None


@dataclass(kw_only=True)
class RunOptions(_AsGiven):
    """Everything `ocirun run/create` was asked, already validated."""

    image: str
    command: list[str] = field(default_factory=list)
    pull: str = "missing"
    volumes: list[Volume] = field(default_factory=list)
    publish: list[Publish] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)  # -e and --env-file, in order
    add_hosts: list[tuple[str, str]] = field(default_factory=list)
    dns: list[str] = field(default_factory=list)
    gpus: GpuRequest | None = None  # --gpus/--nv/--rocm (ocirun/run/gpus.py)
    warnings: list[str] = field(default_factory=list)


def bad(message: str) -> OcirunError:
    """A malformed option value: docker exits 125 for those."""
    return OcirunError(message, EXIT_OCIRUN)


def parse_platform(value: str) -> str:
    """`arm64`, `linux/arm64`, `linux/arm64/v8`, `arm/v7` -> normalised `os/arch[/variant]`."""
    text = value.strip().lower()
    if not text:
        raise bad("invalid platform: empty")
    parts = text.split("/")
    if parts[0] != "linux":
        if parts[0] in ("windows", "darwin", "freebsd"):
            raise bad(f"invalid platform {value!r}: only linux images can run here")
        parts = ["linux", *parts]
    if len(parts) not in (2, 3) or not all(parts):
        raise bad(f"invalid platform {value!r}: expected os/arch[/variant]")
    arch = _ARCH_ALIASES.get(parts[1])
    if arch is None:
        raise bad(f"invalid platform {value!r}: unknown architecture {parts[1]!r}")
    arch_parts = arch.split("/")
    variant = parts[2] if len(parts) == 3 else (arch_parts[1] if len(arch_parts) == 2 else "")
    if arch_parts[0] == "arm64" and variant == "v8":
        variant = ""  # arm64's default variant: the same image either way
    return "/".join(["linux", arch_parts[0]] + ([variant] if variant else []))


def parse_pull(value: str) -> str:
    """`--pull always|missing|never`."""
    if value not in PULL_POLICIES:
        raise bad(f"invalid pull option {value!r}: must be one of always, missing, never")
    return value


def _guest_path(path: str, flag: str) -> str:
    if not path.startswith("/"):
        raise bad(f"invalid {flag} spec: container path {path!r} must be absolute")
    return os.path.normpath(path).replace("//", "/")


def parse_volume(spec: str) -> Volume:
    """`-v host:guest[:ro|rw]` (a bare `-v /guest` anonymous volume is not supported)."""
    parts = spec.split(":")
    if len(parts) == 2:
        host, guest, mode = parts[0], parts[1], ""
    elif len(parts) == 3:
        host, guest, mode = parts
    else:
        raise bad(f"invalid volume spec {spec!r}: expected host-path:container-path[:ro|rw]")
    if not host or not guest:
        raise bad(f"invalid volume spec {spec!r}: expected host-path:container-path[:ro|rw]")
    modes = set(mode.split(",")) - {""}
    unknown = modes - {"ro", "rw", "z", "Z", "rprivate", "private", "shared", "slave", "consistent", "cached", "delegated"}
    if unknown or {"ro", "rw"} <= modes:
        raise bad(f"invalid volume spec {spec!r}: invalid mode {mode!r}")
    if not host.startswith(("/", ".", "~")):
        raise bad(f"invalid volume spec {spec!r}: named volumes are not supported, use a host path")
    return Volume(_host_path(host), _guest_path(guest, "volume"), "ro" in modes, create=True)


def _host_path(path: str) -> str:
    return str(Path(os.path.expanduser(path)).absolute())


def parse_mount(spec: str) -> Volume:
    """`--mount type=bind,src=PATH,dst=PATH[,readonly]` (only bind mounts exist here)."""
    fields: dict[str, str] = {}
    for item in spec.split(","):
        if not item:
            continue
        key, sep, val = item.partition("=")
        fields[key.strip().lower()] = val if sep else "true"
    kind = fields.pop("type", "volume")
    if kind != "bind":
        raise bad(f"invalid mount {spec!r}: only type=bind is supported")
    src = fields.pop("source", None) or fields.pop("src", None)
    dst = fields.pop("destination", None) or fields.pop("dst", None) or fields.pop("target", None)
    if not src or not dst:
        raise bad(f"invalid mount {spec!r}: needs src= and dst=")
    readonly = False
    for key in ("readonly", "ro"):
        if key in fields:
            val = fields.pop(key).lower()
            if val not in ("true", "1", "false", "0"):
                raise bad(f"invalid mount {spec!r}: bad value for {key}")
            readonly = val in ("true", "1")
    fields.pop("bind-propagation", None)
    fields.pop("consistency", None)
    if fields:
        raise bad(f"invalid mount {spec!r}: unknown field {sorted(fields)[0]!r}")
    return Volume(_host_path(src), _guest_path(dst, "mount"), readonly)


def _port_range(text: str, spec: str) -> list[int]:
    try:
        lo, hi = int_pair(text, "-")
    except ValueError:
        raise bad(f"invalid publish spec {spec!r}: bad port {text!r}") from None
    if not (0 < lo <= hi <= 65535):
        raise bad(f"invalid publish spec {spec!r}: port {text!r} out of range")
    return list(range(lo, hi + 1))


def parse_publish(spec: str) -> list[Publish]:
    """`-p [ip:][hostPort:]containerPort[/tcp|udp]`, port ranges included (docker's order)."""
    body, _, proto = spec.partition("/")
    proto = proto.lower() or "tcp"
    if proto not in ("tcp", "udp", "sctp"):
        raise bad(f"invalid publish spec {spec!r}: protocol must be tcp or udp")
    host_ip = ""
    if body.startswith("["):  # [::1]:8080:80
        end = body.find("]")
        if end < 0:
            raise bad(f"invalid publish spec {spec!r}")
        host_ip, body = body[1:end], body[end + 1 :].lstrip(":")
        parts = body.split(":")
    else:
        parts = body.split(":")
        if len(parts) == 3:
            host_ip = parts.pop(0)
    if host_ip:
        try:
            ipaddress.ip_address(host_ip)
        except ValueError:
            raise bad(f"invalid publish spec {spec!r}: bad IP address {host_ip!r}") from None
    if len(parts) == 1:
        host_text, cont_text = "", parts[0]
    elif len(parts) == 2:
        host_text, cont_text = parts
    else:
        raise bad(f"invalid publish spec {spec!r}: expected [ip:]hostPort:containerPort")
    cont = _port_range(cont_text, spec)
    host = _port_range(host_text, spec) if host_text else [0] * len(cont)
    if len(host) != len(cont):
        raise bad(f"invalid publish spec {spec!r}: host and container ranges differ in size")
    return [Publish(c, h, host_ip, proto) for h, c in zip(host, cont, strict=True)]


_ENV_NAME = r"^[^=\s]+$"  # (compiled at its first use: start-up time)


def parse_env_item(item: str, host_env: dict[str, str]) -> tuple[str, str] | None:
    """`NAME=value`, or bare `NAME` taken from ocirun's environment (dropped if unset)."""
    name, sep, value = item.partition("=")
    if not name or not re.match(_ENV_NAME, name):
        raise bad(f"invalid environment variable {item!r}")
    if sep:
        return name, value
    if name in host_env:
        return name, host_env[name]
    return None


def parse_env_file(path: str, host_env: dict[str, str]) -> list[tuple[str, str]]:
    """docker's --env-file: one VAR=value per line, `#` comments, no quoting, no expansion."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise bad(f"cannot read env file {path}: {exc.strerror}") from None
    items = []
    for line in text.splitlines():
        line = line.lstrip()
        if not line or line.startswith("#"):
            continue
        item = parse_env_item(line, host_env)
        if item:
            items.append(item)
    return items


def parse_add_host(spec: str) -> tuple[str, str]:
    """`--add-host name:ip` (or `name=ip`); `host-gateway` means the host, i.e. 127.0.0.1 here."""
    if "=" in spec:
        name, _, ip = spec.partition("=")
    else:
        name, _, ip = spec.partition(":")
    if ip.startswith("[") and ip.endswith("]"):
        ip = ip[1:-1]
    if not name or not ip:
        raise bad(f"invalid --add-host {spec!r}: expected name:ip")
    if ip == "host-gateway":
        ip = "127.0.0.1"
    try:
        ipaddress.ip_address(ip)
    except ValueError:
        raise bad(f"invalid --add-host {spec!r}: bad IP address {ip!r}") from None
    return name, ip


def parse_dns(value: str) -> str:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise bad(f"invalid --dns {value!r}: not an IP address") from None
    return value


def parse_user(spec: str) -> str:
    """`-u name|uid[:group|gid]`: checked for shape; names are resolved in the image later."""
    user, sep, group = spec.partition(":")
    if not user or (sep and not group) or ":" in group:
        raise bad(f"invalid user {spec!r}: expected name|uid[:group|gid]")
    return spec


_NAME = r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]*$"  # (the same)


def parse_stop_signal(value: str) -> str:
    """`--stop-signal TERM|SIGTERM|15`: checked now, as docker does, not at `stop` time."""
    import signal

    text = value.strip().upper()
    if text.isdigit() and 0 < int(text) < signal.NSIG:
        return text
    name = text if text.startswith("SIG") else "SIG" + text
    if not text or not isinstance(getattr(signal, name, None), signal.Signals):
        raise bad(f"invalid signal: {value}")
    return name


def parse_name(value: str) -> str:
    """Container names as docker allows them: [a-zA-Z0-9][a-zA-Z0-9_.-]*."""
    if not re.match(_NAME, value):
        raise bad(f"invalid container name {value!r}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
    return value.lstrip("/")


def ignored_warnings(flags: list[tuple[str, str | None]]) -> list[str]:
    """One warning per ignored flag (given as (flag, value) pairs in command-line order)."""
    seen: list[str] = []
    out = []
    for flag, value in flags:
        if flag in ("--network", "--net"):
            if value in _HOST_NETWORKS or value is None:
                continue
            msg = f"--network {value} ignored: ocirun always shares the host network (see -p, --netcoop)"
        elif flag in _NEEDS_PRIVILEGE:
            msg = f"{flag} ignored: ocirun runs without privileges, cgroups or namespaces"
        else:
            msg = f"{flag} is not supported by ocirun and is ignored"
        if flag not in seen:
            seen.append(flag)
            out.append(msg)
    return out


@dataclass(kw_only=True)
class RawRunArgs(_AsGiven):
    """The raw strings click collected; `build_options` turns them into RunOptions."""

    image: str
    command: tuple[str, ...] = ()
    pull: str = "missing"
    volume: tuple[str, ...] = ()
    mount: tuple[str, ...] = ()
    publish: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    env_file: tuple[str, ...] = ()
    add_host: tuple[str, ...] = ()
    dns: tuple[str, ...] = ()
    gpus: str | None = None
    nv: bool = False
    rocm: bool = False
    ignored: list[tuple[str, str | None]] = field(default_factory=list)


def build_options(raw: RawRunArgs, host_env: dict[str, str] | None = None) -> RunOptions:
    """Validate every raw value; the first bad one raises OcirunError(125)."""
    host_env = dict(os.environ) if host_env is None else host_env
    env: dict[str, str] = {}
    for path in raw.env_file:  # docker: --env-file first, -e wins
        env.update(parse_env_file(path, host_env))
    for item in raw.env:
        pair = parse_env_item(item, host_env)
        if pair:
            env[pair[0]] = pair[1]
    publish = [p for spec in raw.publish for p in parse_publish(spec)]
    volumes = [parse_volume(v) for v in raw.volume] + [parse_mount(m) for m in raw.mount]
    if raw.workdir is not None and not raw.workdir.startswith("/"):
        raise bad(f"the working directory {raw.workdir!r} is invalid, it needs to be an absolute path")
    given = {f.name: getattr(raw, f.name) for f in fields(_AsGiven)}
    for name, parse in _PARSERS.items():
        given[name] = parse(given[name]) if given[name] else None
    return RunOptions(
        **given,
        image=raw.image,
        command=list(raw.command),
        pull=parse_pull(raw.pull),
        volumes=volumes,
        publish=publish,
        env=env,
        add_hosts=[parse_add_host(h) for h in raw.add_host],
        dns=[parse_dns(d) for d in raw.dns],
        gpus=parse_gpus(raw.gpus, raw.nv, raw.rocm),
        warnings=ignored_warnings(raw.ignored),
    )


# The options of _AsGiven that a parser checks (and normalises) when given.
_PARSERS = {
    "platform": parse_platform,
    "user": parse_user,
    "name": parse_name,
    "stop_signal": parse_stop_signal,
}
