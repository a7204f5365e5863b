"""The container store: `<store root>/containers/<id>/`.

Each container directory holds:
- config.json  id, name, image reference, "ImageID", the image tree it is built
               on, the RunPlan, and its State (created/running/exited, exit code,
               pid, start and finish times). Rewritten atomically under lock.
- rootfs/      the container tree (ocirun.engine.cow: lazy hardlinks + copy-up)
- container.log  output of a detached (`-d`) container
- lock         flock serialising config.json updates and name checks
- run.lock     held (exclusively) by the ocirun process running the container;
               "running" means this lock is taken, so a killed runner never
               leaves a container that looks alive.
- execs/<pid>  one file per `ocirun exec` in progress (so `rm -f` can stop them)

Names are unique in a store: checked under `containers/.lock`.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

from ocirun.engine import cow
from ocirun.errors import OcirunError
from ocirun.run.plan import RunPlan, hosts_file, resolv_conf
from ocirun.util.fmt import human_ago, human_duration, parse_time
from ocirun.util.fs import atomic_write, rmtree, writable_dir
from ocirun.util.locks import flocked
from ocirun.util.log import log
from ocirun.util.paths import store_root
from ocirun.util.records import asdict, dataclass, field

TYPE_CHECKING = False  # typing's, without importing typing (start-up time)
if TYPE_CHECKING:
    from typing import Any

    from layers.check import Finding
    from layers.store import Store

# docker exits 1 when a container command names no container
EXIT_NO_SUCH = 1

_ADJECTIVES = (
    "admiring adoring agitated amazing angry awesome blissful bold brave busy charming clever "
    "cool dazzling determined eager ecstatic elastic elated elegant epic festive focused friendly "
    "funny gallant gifted goofy gracious happy hopeful hungry jolly keen kind laughing loving "
    "lucid modest musing nice nifty optimistic peaceful practical priceless quirky relaxed "
    "serene sharp silly sleepy stoic sweet tender trusting upbeat vibrant wizardly zealous"
).split()
_SURNAMES = (
    "albattani allen archimedes babbage banach bardeen bell blackwell bohr booth borg bose "
    "cerf curie darwin dijkstra einstein euclid euler fermat feynman galileo gauss goldberg "
    "hamilton hawking hopper hypatia jackson johnson kepler knuth lamarr liskov lovelace "
    "mccarthy meitner mendel morse newton nobel noether pasteur perlman pike ritchie shannon "
    "sinoussi thompson torvalds turing wilson wozniak wright"
).split()


def _choice(words: list[str]) -> str:
    return words[int.from_bytes(os.urandom(4), "little") % len(words)]


def now_iso() -> str:
    """RFC 3339 UTC with microseconds, as docker writes its times."""
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e6):06d}Z"


@dataclass
class State:
    """Docker's State, reduced: status is created, running or exited."""

    status: str = "created"
    pid: int = 0
    exit_code: int | None = None
    started_at: str = ""
    finished_at: str = ""
    error: str = ""


@dataclass
class Container:
    """One container's config.json, plus where it lives."""

    id: str
    name: str
    image: str  # the reference the user gave
    image_id: str  # the image's config digest (what `rmi` checks)
    image_root: str  # host path of the image tree the container shares files with
    created: str
    plan: RunPlan
    auto_remove: bool = False
    state: State = field(default_factory=State)
    path: Path = Path()

    @property
    def rootfs(self) -> Path:
        return self.path / "rootfs"

    @property
    def log_path(self) -> Path:
        return self.path / "container.log"

    def tree(self) -> cow.ContainerTree:
        return cow.ContainerTree(self.image_root, self.rootfs)

    def to_json(self) -> dict[str, Any]:
        return {
            "Id": self.id,
            "Name": self.name,
            "Image": self.image,
            "ImageID": self.image_id,
            "ImageRoot": self.image_root,
            "Created": self.created,
            "AutoRemove": self.auto_remove,
            "Plan": self.plan.to_json(),
            "State": asdict(self.state),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any], path: Path) -> Container:
        return cls(
            id=d["Id"],
            name=d["Name"],
            image=d["Image"],
            image_id=d.get("ImageID", ""),
            image_root=d.get("ImageRoot", ""),
            created=d.get("Created", ""),
            plan=RunPlan.from_json(d["Plan"]),
            auto_remove=bool(d.get("AutoRemove")),
            state=State(**d.get("State", {})),
            path=path,
        )


class ContainerStore:
    """All containers under one store root."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.dir = self.root / "containers"

    # -- lookup ---------------------------------------------------------------

    def _load(self, cdir: Path) -> Container | None:
        """The container in `cdir`; None while it is being created, and also (with a
        warning line) when its config.json is damaged: its files stay where they are."""
        try:
            data = json.loads((cdir / "config.json").read_text())
            return Container.from_json(data, cdir)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            reason = f"missing {exc}" if isinstance(exc, KeyError) else str(exc)
            log.warning(f"container {cdir.name[:12]}: config.json is damaged ({reason}): "
                        "run 'ocirun system check --repair'")
            return None

    def list(self) -> list[Container]:
        """Every container, newest first (the order of `ps`)."""
        if not self.dir.is_dir():
            return []
        out = [c for d in self.dir.iterdir() if d.name[:1] != "." and d.is_dir() and (c := self._load(d))]
        return sorted(out, key=lambda c: c.created, reverse=True)

    def find(self, ref: str) -> Container | None:
        """By full id, name, or unique id prefix (as docker)."""
        ref = ref.lstrip("/")
        if len(ref) == 64 and all(ch in "0123456789abcdef" for ch in ref) and (self.dir / ref).is_dir():
            return self._load(self.dir / ref)
        all_ = self.list()
        for c in all_:
            if c.name == ref:
                return c
        matches = [c for c in all_ if c.id.startswith(ref)] if ref else []
        if len(matches) > 1:
            raise OcirunError(f"multiple containers found with prefix {ref}", EXIT_NO_SUCH)
        return matches[0] if matches else None

    def using_image(self, image_id: str) -> list[str]:
        """Ids of the containers whose config.json names this image (layers.store.ContainerIndex).

        Reads the raw "ImageID" (or "Image"), so a container whose config no longer
        loads still keeps its image from being removed.
        """
        out = []
        if not self.dir.is_dir():
            return out
        for entry in os.scandir(self.dir):
            try:
                cfg = json.loads(Path(entry.path, "config.json").read_text())
            except (OSError, ValueError):
                continue
            ref = str(cfg.get("ImageID") or cfg.get("Image") or "") if isinstance(cfg, dict) else ""
            if ref and (ref == image_id or ref == image_id.split(":", 1)[1]):
                out.append(entry.name)
        return sorted(out)

    def tree_dirs(self) -> list[str]:
        """Every directory under containers/ (layers.store.ContainerIndex: `system df`)."""
        if not self.dir.is_dir():
            return []
        return [e.path for e in os.scandir(self.dir) if e.is_dir()]

    def check(self, repair: bool) -> list[Finding]:
        """Damaged containers and fake-root databases (layers.store.ContainerIndex: `system check`)."""
        from ocirun.run.check import check_containers

        return check_containers(self.dir, repair)

    def get(self, ref: str) -> Container:
        c = self.find(ref)
        if c is None:
            raise OcirunError(f"No such container: {ref}", EXIT_NO_SUCH)
        return c

    # -- creation -------------------------------------------------------------

    def _unique_name(self, wanted: str | None) -> str:
        names = {c.name for c in self.list()}
        if wanted:
            if wanted in names:
                other = next(c for c in self.list() if c.name == wanted)
                raise OcirunError(
                    f'Conflict. The container name "/{wanted}" is already in use by container '
                    f'"{other.id}". You have to remove (or rename) that container to be able to reuse that name.'
                )
            return wanted
        while True:
            name = f"{_choice(_ADJECTIVES)}_{_choice(_SURNAMES)}"
            if name not in names:
                return name

    def create(
        self,
        *,
        image: str,
        image_id: str,
        image_root: str | Path,
        plan_for_id: Any,
        name: str | None = None,
        auto_remove: bool = False,
    ) -> Container:
        """Make a container: a lazy tree over `image_root` (no copy), config.json, etc files.

        `plan_for_id(container_id) -> RunPlan`: the plan needs the id (the default hostname).
        """
        self.dir.mkdir(parents=True, exist_ok=True)
        cid = os.urandom(32).hex()
        plan: RunPlan = plan_for_id(cid)
        with flocked(self.dir / ".lock"):
            cname = self._unique_name(name)
            cdir = self.dir / cid
            cdir.mkdir(mode=0o700)
            c = Container(
                id=cid,
                name=cname,
                image=image,
                image_id=image_id,
                image_root=str(Path(image_root).absolute()),
                created=now_iso(),
                plan=plan,
                auto_remove=auto_remove,
                path=cdir,
            )
            try:
                c.tree().create()
                (cdir / "execs").mkdir()
                self.write_etc(c)
                self.save(c)
            except BaseException:
                rmtree(cdir)
                raise
        return c

    def write_etc(self, c: Container) -> None:
        """/etc/hosts, /etc/hostname, /etc/resolv.conf: the container's own files (refreshed at start)."""
        tree = c.tree()
        etc = c.rootfs / "etc"
        if etc.is_symlink() or not etc.exists():
            with writable_dir(str(c.rootfs)):
                with contextlib.suppress(FileNotFoundError):
                    etc.unlink()
                etc.mkdir(mode=0o755)
        tree.ensure(str(etc))
        files = {
            "hosts": hosts_file(c.plan.hostname, c.plan.add_hosts),
            "hostname": c.plan.hostname + "\n",
            "resolv.conf": resolv_conf(c.plan.dns),
        }
        tmp = c.rootfs / "tmp"
        if not tmp.exists() and not tmp.is_symlink():
            with writable_dir(str(c.rootfs)):
                tmp.mkdir()  # the container's own /tmp, also when the image has none
            os.chmod(tmp, 0o1777)
        with writable_dir(str(etc)):
            for fname, text in files.items():
                atomic_write(etc / fname, text.encode(), sync=False)

    # -- state ----------------------------------------------------------------

    def save(self, c: Container) -> None:
        """Atomically rewrite config.json."""
        atomic_write(c.path / "config.json", json.dumps(c.to_json(), indent=1).encode(), sync=False)

    def update_state(self, c: Container, **changes: Any) -> Container:
        """Re-read, change State fields, save: safe against concurrent writers."""
        with flocked(c.path / "lock"):
            fresh = self._load(c.path) or c
            for key, value in changes.items():
                setattr(fresh.state, key, value)
            self.save(fresh)
        c.state = fresh.state
        return fresh

    def is_running(self, c: Container) -> bool:
        """The run.lock is held by a live ocirun process."""
        lock = c.path / "run.lock"
        if not lock.exists():
            return False
        fd = os.open(lock, os.O_RDONLY | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return True
            raise
        finally:
            os.close(fd)
        return False

    def status(self, c: Container) -> str:
        """created, running or exited: the state file corrected by the run lock."""
        if self.is_running(c):
            return "running"
        if c.state.status == "running":
            return "exited"  # its runner was killed
        return c.state.status

    @contextlib.contextmanager
    def running(self, c: Container) -> Iterator[None]:
        """Hold run.lock while the container's main process runs; record start and finish."""
        fd = os.open(c.path / "run.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                raise OcirunError(f"container {c.name} is already running") from None
            self.update_state(c, status="running", pid=os.getpid(), exit_code=None, started_at=now_iso(), finished_at="", error="")
            yield
        finally:
            os.close(fd)

    def finish(self, c: Container, exit_code: int, error: str = "") -> None:
        self.update_state(c, status="exited", pid=0, exit_code=exit_code, finished_at=now_iso(), error=error)

    # -- exec bookkeeping -----------------------------------------------------

    @contextlib.contextmanager
    def exec_session(self, c: Container) -> Iterator[None]:
        marker = c.path / "execs" / str(os.getpid())
        marker.parent.mkdir(exist_ok=True)
        marker.write_text("")
        try:
            yield
        finally:
            with contextlib.suppress(FileNotFoundError):
                marker.unlink()

    def exec_pids(self, c: Container) -> list[int]:
        try:
            return [int(p.name) for p in (c.path / "execs").iterdir() if p.name.isdigit()]
        except FileNotFoundError:
            return []

    # -- removal --------------------------------------------------------------

    def kill(self, c: Container, sig: int = signal.SIGKILL, timeout: float = 10.0) -> None:
        """Stop the runner (killing the tracer kills the traced tree) and every exec."""
        pids = self.exec_pids(c)
        if self.is_running(c) and c.state.pid:
            pids.append(c.state.pid)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while self.is_running(c) and time.monotonic() < deadline:
            time.sleep(0.02)

    def remove(self, c: Container, force: bool = False, background: bool = False) -> None:
        """Delete the container (its tree, logs, config). Running ones need force.

        The directory is renamed away at once (the container is gone for every
        command); background=True leaves deleting the files to a detached child,
        so `run --rm` returns without waiting for them (leftovers: prune_trash).
        """
        if self.is_running(c):
            if not force:
                raise OcirunError(
                    f"cannot remove container {c.name}: container is running: "
                    "stop the container before removing or force remove",
                    EXIT_NO_SUCH,
                )
            self.kill(c)
        with flocked(self.dir / ".lock"):
            # rename first: a half-removed container never shows up in `ps`
            trash = self.dir / f".rm-{c.id}"
            try:
                os.rename(c.path, trash)
            except FileNotFoundError:
                return
        if background:
            pid = _fork_detached()
            if pid == 0:
                try:
                    rmtree(trash)
                finally:
                    os._exit(0)
            if pid is not None:
                return
        rmtree(trash)

    def prune_trash(self) -> None:
        """Finish removals a killed background child left behind."""
        if self.dir.is_dir():
            for d in self.dir.glob(".rm-*"):
                with contextlib.suppress(OSError):
                    rmtree(d)


def open_stores(root: str | os.PathLike[str] | None) -> tuple[Store, ContainerStore]:
    """The image store and the container store on one root; the image store asks the
    container store which images are in use."""
    from layers.store import Store

    cstore = ContainerStore(store_root(root).absolute())
    return Store.open(cstore.root, containers=cstore), cstore


def _fork_detached() -> int | None:
    """Fork a child in its own session with no terminal fds: 0 in the child, None on failure."""
    try:
        pid = os.fork()
    except OSError:
        return None
    if pid:
        return pid
    try:
        os.setsid()
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
    except OSError:
        pass
    return 0


def status_text(store: ContainerStore, c: Container, now: float | None = None) -> str:
    """The STATUS column of `ps`."""
    now = time.time() if now is None else now
    status = store.status(c)
    if status == "running":
        return f"Up {human_duration(now - (parse_time(c.state.started_at) or 0.0))}"
    if status == "exited":
        code = c.state.exit_code if c.state.exit_code is not None else 137
        return f"Exited ({code}) {human_ago(c.state.finished_at or c.state.started_at, now)}"
    return "Created"


def ports_text(c: Container) -> str:
    """The PORTS column: `0.0.0.0:8080->80/tcp`."""
    return ", ".join(
        f"{p.host_ip or '0.0.0.0'}:{p.host_port}->{p.container_port}/{p.proto}" for p in c.plan.ports
    )
