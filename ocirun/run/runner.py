"""Glue between the image store, the container store and the engine.

create_container: image (pulled per --pull) + options -> a container (no copy).
start_container:  a container -> an EnginePlan -> the engine's exit status,
                  with docker's exit codes and --rm on every exit path.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from pathlib import Path

from ocirun.engine.plan import Binding, EnginePlan
from ocirun.errors import EXIT_OCIRUN, OcirunError
from ocirun.run import procfakes
from ocirun.run.containers import Container, ContainerStore
from ocirun.run.options import RunOptions, Volume
from ocirun.run.plan import RunPlan, build_run_plan, resolv_conf
from ocirun.util.fs import writable_dir
from ocirun.util.log import log

TYPE_CHECKING = False  # typing's, without importing typing (start-up time)
if TYPE_CHECKING:
    from typing import Any

# What the guest sees of the host, as `proot -R` and docker give it.
HOST_BINDINGS = ("/proc", "/sys", "/dev")


def get_image(store: Any, ref: str, platform: str | None, pull: str) -> Any:
    """The image record for `ref`, pulled as the --pull policy says (docker's messages)."""
    _check_reference(ref)
    record = None
    if pull != "always":
        from layers.sites import find_image

        record = find_image(store, ref, platform)
        if record is not None and platform and not _platform_matches(record.platform, platform):
            record = None
    if record is None:
        if pull == "never":
            raise OcirunError(f"No such image: {ref}" + (f" (platform {platform})" if platform else ""), EXIT_OCIRUN)
        if pull == "missing":
            print(f"Unable to find image '{ref}' locally", file=sys.stderr)
        record = store.pull(ref, platform)
    return record


def _check_reference(ref: str) -> None:
    """A malformed reference fails at once (one line), before any 'Unable to find' notice.

    An image id or a container-store name may not parse as a reference: only what
    would go to a registry (pull) must.
    """
    import re

    if re.fullmatch(r"(sha256:)?[0-9a-f]{4,64}", ref):
        return
    from registry.reference import parse_reference

    parse_reference(ref)


def prepare_host_paths(volumes: list[Volume]) -> None:
    """`-v` creates a missing host directory (as docker does); `--mount` needs it to exist.

    Without this the engine would bind nothing and the guest would see an absent path.
    """
    for v in volumes:
        if os.path.lexists(v.host):
            continue
        if not v.create:
            raise OcirunError(f"invalid mount config for type \"bind\": bind source path does not exist: {v.host}")
        try:
            os.makedirs(v.host, mode=0o755, exist_ok=True)
        except OSError as exc:
            raise OcirunError(f"cannot create the host directory {v.host} for -v: {exc.strerror}") from None


def _platform_matches(have: str, want: str) -> bool:
    from registry.platform import Platform

    try:
        return Platform.parse(want).rank(Platform.parse(have)) is not None
    except OcirunError:
        return False


def create_container(store: Any, cstore: ContainerStore, opts: RunOptions, hold: bool = False) -> Container:
    """Pull if needed, build the RunPlan from the image config, make the container.
    hold: SIGTERM/SIGHUP wait from the container's making until start_container runs it."""
    for message in opts.warnings:
        log.warning(message)
    prepare_host_paths(opts.volumes)
    record = get_image(store, opts.image, opts.platform, opts.pull)
    image_root = store.ensure_unpacked(record)
    if opts.platform is None:
        opts.platform = record.platform or None
    if hold:
        hold_signals()
    return cstore.create(
        image=opts.image,
        image_id=record.id,
        image_root=image_root,
        plan_for_id=lambda cid: build_run_plan(opts, record.config, image_root, cid),
        name=opts.name,
        auto_remove=opts.rm,
    )


# --- the engine plan ------------------------------------------------------------


def _extensions(c: Container, run_plan: RunPlan, uid: int, gid: int) -> list[Any]:
    """Copy-up first (so the others see private inodes), then fake ids, -k, ports."""
    from ocirun.engine.extensions import for_runner

    return for_runner(
        uid=uid,
        gid=gid,
        kernel_release=_uts_spec(run_plan.hostname, run_plan.kernel_release),
        ports=[(p.container_port, p.host_port) for p in run_plan.ports],
        netcoop=run_plan.netcoop,
        state_dir=str(c.path),
        rootfs=str(c.rootfs),
        ownership=str(Path(c.image_root).parent / "ownership"),
        tree=c.tree(),
        readonly=[v.host for v in run_plan.volumes if v.readonly],
    )


def _uts_spec(hostname: str, release: str | None) -> str:
    """The container's hostname (and -k release) in PRoot's seven-field -k form, the rest as the kernel says."""
    if release and release.startswith("\\"):
        return release  # the user's own long form wins
    real = os.uname()
    try:
        with open("/proc/sys/kernel/domainname") as f:
            domain = f.read().strip()
    except OSError:
        domain = "(none)"
    fields = (real.sysname, hostname, release or real.release, real.version, real.machine, domain, "-1")
    return "\\" + "".join(f + "\\" for f in fields)


# the platform a 64-bit Python's own programs have on each host: no QEMU to look for
_OWN_PLATFORM = {"x86_64": "linux/amd64", "aarch64": "linux/arm64"}


def _qemu(platform: str | None) -> list[str] | None:
    """EnginePlan.qemu for an image of `platform`; the QEMU modules are imported only for
    another platform than the host's own (start-up time)."""
    if not platform or platform == _OWN_PLATFORM.get(os.uname().machine) and sys.maxsize > 2**32:
        return None
    from ocirun.engine.qemu import qemu_for_platform

    return qemu_for_platform(platform)


def build_engine_plan(
    c: Container,
    argv: list[str] | None = None,
    env: dict[str, str] | None = None,
    cwd: str | None = None,
    uid: int | None = None,
    gid: int | None = None,
) -> EnginePlan:
    """The container's RunPlan (with exec's overrides) as the engine's plan."""
    run_plan = c.plan
    bindings = [Binding(h, h) for h in HOST_BINDINGS]
    # /proc files the host hides from us (Android): plausible stand-ins
    bindings += [Binding(h, g, readonly=True) for h, g in procfakes.write_fakes(c.path / "proc")]
    if run_plan.share_tmp:
        bindings.append(Binding("/tmp", "/tmp"))
    bindings += [Binding(v.host, v.guest, readonly=v.readonly) for v in run_plan.volumes]
    uid = run_plan.uid if uid is None else uid
    gid = run_plan.gid if gid is None else gid
    return EnginePlan(
        argv=list(argv or run_plan.argv),
        rootfs=str(c.rootfs),
        bindings=bindings,
        cwd=cwd or run_plan.cwd,
        env=dict(env if env is not None else run_plan.env),
        extensions=_extensions(c, run_plan, uid, gid),
        qemu=_qemu(run_plan.platform),
        # docker: the container (or exec session) ends with its main process and
        # whatever it left running is killed; PRoot's default would wait for them.
        kill_on_exit=True,
    )


def prepare_tree(c: Container, engine_plan: EnginePlan) -> None:
    """Materialise what the engine needs before it starts: the workdir and binding targets."""
    for b in engine_plan.bindings:
        if b.guest not in HOST_BINDINGS:
            _guest_dir(c, b.guest, create=False)
    _guest_dir(c, engine_plan.cwd, create=True)
    if not c.plan.dns:  # the host's resolv.conf may have changed since create
        etc = c.rootfs / "etc"
        with contextlib.suppress(OSError):
            text = resolv_conf([])
            if (etc / "resolv.conf").read_text() != text:
                (etc / "resolv.conf").write_text(text)


def _guest_dir(c: Container, guest: str, create: bool) -> Path | None:
    """Walk `guest` in the container tree, materialising on the way (symlinks stay inside)."""
    tree = c.tree()
    root = Path(tree.root)
    parts = [p for p in guest.split("/") if p and p != "."]
    current = root
    links = 0
    while parts:
        tree.ensure(str(current))
        name = parts.pop(0)
        if name == "..":
            current = current.parent if current != root else root
            continue
        nxt = current / name
        if nxt.is_symlink():
            links += 1
            if links > 40:
                return None
            target = os.readlink(nxt)
            if target.startswith("/"):
                current = root
            parts = [p for p in target.split("/") if p and p != "."] + parts
            continue
        if not nxt.exists():
            if not create:
                return None
            with writable_dir(str(current)):  # docker creates a missing workdir
                nxt.mkdir(mode=0o755)
        current = nxt
    tree.ensure(str(current))
    return current


def _run_engine(engine_plan: EnginePlan) -> int:
    from ocirun import engine

    return int(engine.run(engine_plan))


class _Terminated(BaseException):
    """SIGTERM/SIGHUP to ocirun: unwind (so --rm and the state update still happen)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


HELD_SIGNALS = {signal.SIGTERM, signal.SIGHUP}


def hold_signals() -> None:
    """Keep SIGTERM/SIGHUP pending from here until start_container handles them: one
    that came between making a --rm container and running it killed ocirun with the
    container left behind (scancel of a job that had just started)."""
    signal.pthread_sigmask(signal.SIG_BLOCK, HELD_SIGNALS)


@contextlib.contextmanager
def _unwind_on_signals():
    """SIGTERM/SIGHUP raise _Terminated inside (held ones arrive now); after it they are
    held again, so the clean-up that follows (--rm, the state) is not cut short."""
    def handler(signum, frame):
        raise _Terminated(signum)

    old = {s: signal.signal(s, handler) for s in HELD_SIGNALS}
    signal.pthread_sigmask(signal.SIG_UNBLOCK, HELD_SIGNALS)
    try:
        yield
    finally:
        hold_signals()
        for s, h in old.items():
            signal.signal(s, h)


def start_container(cstore: ContainerStore, c: Container) -> int:
    """Run the container's main command in the foreground; the command's exit status."""
    code = EXIT_OCIRUN
    error = ""
    try:
        with cstore.running(c), _unwind_on_signals():
            try:  # a SIGTERM may come while the tree is prepared: same unwinding
                engine_plan = build_engine_plan(c)
                prepare_tree(c, engine_plan)
                code = _run_engine(engine_plan)  # the engine answers 127/126 itself
            except OcirunError as exc:
                code, error = exc.exit_code, exc.message
                raise
            except KeyboardInterrupt:
                code, error = 130, "interrupted"
                raise
            except _Terminated as exc:
                code, error = 128 + exc.signum, "terminated"
                raise SystemExit(code) from None
    finally:
        if c.auto_remove:
            with contextlib.suppress(OcirunError, OSError):
                cstore.remove(c, force=True, background=True)
        else:
            with contextlib.suppress(OSError):
                cstore.finish(c, code, error)
    return code


def exec_in(cstore: ContainerStore, c: Container, argv: list[str], env: dict[str, str], cwd: str | None,
            user: str | None) -> int:
    """A new process (a new engine instance) on the container's tree and config."""
    from ocirun.run.plan import resolve_user

    uid = gid = None
    run_env = dict(c.plan.env)
    if user:
        guest = resolve_user(c.rootfs, user)
        uid, gid = guest.uid, guest.gid
        run_env["HOME"] = guest.home
    run_env.update(env)
    engine_plan = build_engine_plan(c, argv=argv, env=run_env, cwd=cwd, uid=uid, gid=gid)
    with cstore.exec_session(c):
        prepare_tree(c, engine_plan)
        return _run_engine(engine_plan)


def start_detached(cstore: ContainerStore, c: Container, wait: float = 10.0) -> None:
    """Run the container in a background ocirun whose output goes to the container's log."""
    import subprocess  # (only for -d: start-up time of every run)

    log_file = open(c.log_path, "ab")  # handed to the child
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ocirun.run.background", str(cstore.root), c.id],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
            start_new_session=True,
            close_fds=True,
        )
    finally:
        log_file.close()
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if cstore.is_running(c) or proc.poll() is not None:
            return
        time.sleep(0.01)
