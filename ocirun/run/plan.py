"""Image config + run options -> a RunPlan (what to run in a container, as docker would).

The RunPlan is saved in the container's config.json, so `ocirun start` and
`ocirun exec` run the same thing later without the image config or the CLI.
Docker's rules implemented here:
- argv: `--entrypoint X` replaces the image's Entrypoint *and* drops its Cmd;
  `--entrypoint ""` clears both; otherwise Entrypoint + (command or Cmd).
- env: PATH (docker's default), HOSTNAME, then the image's Env, then TERM from
  the caller, then under a batch scheduler its variables (ocirun/run/scheduler.py),
  then --env-file and -e; HOME of the guest user unless set. Nothing else of the
  caller's environment leaks in.
- user: `-u` or the image's User, names resolved in the image's /etc/passwd
  and /etc/group (read from the tree, no engine needed); default root.
- workdir: -w or WorkingDir or "/".
- ports: -p, plus every ExposedPort on a free host port with -P.
"""

from __future__ import annotations

import os
from pathlib import Path

from ocirun.errors import EXIT_OCIRUN, OcirunError
from ocirun.run.gpus import GpuSetup, gpu_setup
from ocirun.run.options import Publish, RunOptions, Volume
from ocirun.run.scheduler import rendezvous_dirs, scheduler_env, scheduler_hostname
from ocirun.util.records import asdict, dataclass, field

TYPE_CHECKING = False  # typing's, without importing typing (start-up time)
if TYPE_CHECKING:
    from typing import Any

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_STOP_SIGNAL = "SIGTERM"


@dataclass
class ImageDefaults:
    """The parts of an OCI image config a runner honours."""

    env: list[str] = field(default_factory=list)
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    workdir: str = ""
    user: str = ""
    exposed_ports: list[str] = field(default_factory=list)
    stop_signal: str = ""

    @classmethod
    def from_config(cls, config: dict[str, Any] | None) -> ImageDefaults:
        """Accept the whole image config JSON or just its "config" member."""
        config = config or {}
        if any(k in config for k in ("config", "rootfs", "architecture")):
            inner = config.get("config") or {}
        else:
            inner = config
        return cls(
            env=list(inner.get("Env") or []),
            entrypoint=list(inner.get("Entrypoint") or []),
            cmd=list(inner.get("Cmd") or []),
            workdir=inner.get("WorkingDir") or "",
            user=inner.get("User") or "",
            exposed_ports=sorted((inner.get("ExposedPorts") or {}).keys()),
            stop_signal=inner.get("StopSignal") or "",
        )


@dataclass
class GuestUser:
    """A resolved `-u` spec."""

    uid: int
    gid: int
    home: str
    name: str = ""


@dataclass
class RunPlan:
    """What a container runs; saved as JSON in the container's config."""

    argv: list[str]
    env: dict[str, str]
    cwd: str
    uid: int
    gid: int
    user: str
    hostname: str
    platform: str | None = None
    volumes: list[Volume] = field(default_factory=list)
    ports: list[Publish] = field(default_factory=list)
    netcoop: bool = False
    kernel_release: str | None = None
    dns: list[str] = field(default_factory=list)
    add_hosts: list[tuple[str, str]] = field(default_factory=list)
    share_tmp: bool = False
    stop_signal: str = DEFAULT_STOP_SIGNAL

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> RunPlan:
        d = dict(d)
        d["volumes"] = [Volume(**v) for v in d.get("volumes", [])]
        d["ports"] = [Publish(**p) for p in d.get("ports", [])]
        d["add_hosts"] = [tuple(h) for h in d.get("add_hosts", [])]
        return cls(**d)


def guest_file(rootfs: str | Path, guest_path: str, max_links: int = 40) -> Path | None:
    """Host path of `guest_path` in `rootfs`, following symlinks inside the root only."""
    root = Path(rootfs)
    parts = [p for p in guest_path.split("/") if p not in ("", ".")]
    resolved: list[str] = []
    links = 0
    while parts:
        name = parts.pop(0)
        if name == "..":
            if resolved:
                resolved.pop()
            continue
        host = root.joinpath(*resolved, name)
        if host.is_symlink():
            links += 1
            if links > max_links:
                return None
            target = os.readlink(host)
            if target.startswith("/"):
                resolved = []
            parts = [p for p in target.split("/") if p not in ("", ".")] + parts
            continue
        resolved.append(name)
    host = root.joinpath(*resolved)
    return host if host.exists() else None


def _read_db(rootfs: str | Path, guest_path: str) -> list[list[str]]:
    path = guest_file(rootfs, guest_path)
    if path is None or not path.is_file():
        return []
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return []
    return [line.split(":") for line in text.splitlines() if line and not line.startswith("#")]


def resolve_user(rootfs: str | Path, spec: str) -> GuestUser:
    """`name|uid[:group|gid]` -> ids and home, as docker does (unknown names fail, 125)."""
    user, _, group = (spec or "0").partition(":")
    passwd = [e for e in _read_db(rootfs, "/etc/passwd") if len(e) >= 7]
    entry = None
    for e in passwd:
        if e[0] == user or (user.isdigit() and e[2] == user):
            entry = e
            break
    if entry is None and not user.isdigit():
        raise OcirunError(f"unable to find user {user}: no matching entries in passwd file", EXIT_OCIRUN)
    if entry is not None:
        uid, gid, home, name = int(entry[2]), int(entry[3]), entry[5] or "/", entry[0]
    else:
        uid, gid, home, name = int(user), 0, "/", ""
    if uid == 0 and entry is None:
        home = "/root"
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            groups = [e for e in _read_db(rootfs, "/etc/group") if len(e) >= 3]
            match = [e for e in groups if e[0] == group]
            if not match:
                raise OcirunError(f"unable to find group {group}: no matching entries in group file", EXIT_OCIRUN)
            gid = int(match[0][2])
    return GuestUser(uid, gid, home, name)


def command_argv(defaults: ImageDefaults, command: list[str], entrypoint: str | None) -> list[str]:
    """Docker's Entrypoint/Cmd rules."""
    if entrypoint is not None:
        argv = ([entrypoint] if entrypoint else []) + list(command)
    else:
        argv = list(defaults.entrypoint) + (list(command) if command else list(defaults.cmd))
    if not argv:
        raise OcirunError("no command specified", EXIT_OCIRUN)
    return argv


def guest_env(
    defaults: ImageDefaults, opts_env: dict[str, str], hostname: str, home: str, host_env: dict[str, str],
    gpu_env: dict[str, str] | None = None,
) -> dict[str, str]:
    """Image Env + TERM + the scheduler's + the GPUs' + --env-file/-e; PATH, HOSTNAME and HOME
    defaulted as docker does."""
    env = {"PATH": DEFAULT_PATH, "HOSTNAME": hostname}
    for item in defaults.env:
        name, sep, value = item.partition("=")
        if name and sep:
            env[name] = value
    if "TERM" in host_env:
        env["TERM"] = host_env["TERM"]
    env.update(scheduler_env(host_env))
    env.update(gpu_env or {})
    env.update(opts_env)
    env.setdefault("HOME", home)
    return env


def free_port(ip: str = "") -> int:
    """An unused TCP port on the host (for -P and `-p CONTAINERPORT`)."""
    import socket  # (only with -P/-p: start-up time of every run)

    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((ip or "", 0))
        return s.getsockname()[1]


def resolve_ports(opts: RunOptions, defaults: ImageDefaults) -> list[Publish]:
    """-p as given (host port 0 -> a free one), then with -P every unpublished ExposedPort."""
    ports = [p if p.host_port else Publish(p.container_port, free_port(p.host_ip), p.host_ip, p.proto) for p in opts.publish]
    if opts.publish_all:
        taken = {(p.container_port, p.proto) for p in ports}
        for spec in defaults.exposed_ports:
            num, _, proto = spec.partition("/")
            if not num.isdigit():
                continue
            key = (int(num), proto or "tcp")
            if key not in taken:
                ports.append(Publish(key[0], free_port(), "", key[1]))
                taken.add(key)
    return ports


def build_run_plan(
    opts: RunOptions,
    config: dict[str, Any] | None,
    rootfs: str | Path,
    container_id: str,
    host_env: dict[str, str] | None = None,
) -> RunPlan:
    """The whole mapping; `rootfs` is the image tree (read for /etc/passwd and /etc/group)."""
    host_env = dict(os.environ) if host_env is None else host_env
    defaults = ImageDefaults.from_config(config)
    argv = command_argv(defaults, opts.command, opts.entrypoint)
    user_spec = opts.user if opts.user is not None else (defaults.user or "0")
    user = resolve_user(rootfs, user_spec)
    hostname = opts.hostname or scheduler_hostname(host_env) or container_id[:12]
    gpu = _gpu_setup(opts, defaults, host_env)
    return RunPlan(
        argv=argv,
        env=guest_env(defaults, opts.env, hostname, user.home, host_env, gpu.env),
        cwd=opts.workdir or defaults.workdir or "/",
        uid=user.uid,
        gid=user.gid,
        user=user_spec,
        hostname=hostname,
        platform=opts.platform,
        volumes=list(opts.volumes) + _rendezvous_volumes(opts.volumes, host_env)
        + [Volume(h, g, readonly=ro) for h, g, ro in gpu.volumes],
        ports=resolve_ports(opts, defaults),
        netcoop=opts.netcoop,
        kernel_release=opts.kernel_release,
        dns=list(opts.dns),
        add_hosts=list(opts.add_hosts),
        share_tmp=opts.share_tmp,
        stop_signal=opts.stop_signal or defaults.stop_signal or DEFAULT_STOP_SIGNAL,
    )


def _gpu_setup(opts: RunOptions, defaults: ImageDefaults, host_env: dict[str, str]) -> GpuSetup:
    """--gpus/--nv/--rocm: the driver's bindings and environment (none without the flags)."""
    if opts.gpus is None:
        return GpuSetup()
    image_env = dict(item.partition("=")[::2] for item in defaults.env)
    return gpu_setup(opts.gpus, host_env, image_env)


def _rendezvous_volumes(volumes: list[Volume], host_env: dict[str, str]) -> list[Volume]:
    """The launcher's PMI/PMIx socket directories, bound at the same path unless -v did."""
    taken = {v.guest for v in volumes}
    return [Volume(d, d) for d in rendezvous_dirs(host_env) if d not in taken]


def hosts_file(hostname: str, add_hosts: list[tuple[str, str]]) -> str:
    """The container's /etc/hosts: localhost, the hostname, then --add-host entries."""
    lines = [
        "127.0.0.1\tlocalhost",
        "::1\tlocalhost ip6-localhost ip6-loopback",
        f"127.0.1.1\t{hostname}",
    ]
    lines += [f"{ip}\t{name}" for name, ip in add_hosts]
    return "\n".join(lines) + "\n"


def resolv_conf(dns: list[str], host_resolv: str = "/etc/resolv.conf") -> str:
    """--dns servers, or the host's resolv.conf (the guest shares the host network)."""
    if dns:
        return "".join(f"nameserver {ip}\n" for ip in dns)
    try:
        return Path(host_resolv).read_text()
    except OSError:
        return "nameserver 127.0.0.1\n"
