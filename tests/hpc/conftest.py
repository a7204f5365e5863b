"""Fixtures for the cluster tests: the single-node Slurm that `sudo scripts/slurm up` starts.

Jobs run as the user running pytest: as root in the root pass (Slurm runs root's jobs
as root), as the unprivileged test user in the other pass, where they show what a
cluster user gets. A test that needs Slurm skips, saying so, only when no controller
answers; scripts/test starts it before both passes.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import ocirun_env

DEFAULT_CONF = "/var/tmp/ocirun-slurm/etc/slurm.conf"


@dataclass
class Slurm:
    """The test cluster's client side: its config and a few commands with waits."""

    conf: str

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """The environment jobs are submitted with (sbatch and srun export it to the tasks)."""
        env = ocirun_env(extra)
        env["SLURM_CONF"] = self.conf
        for name in [k for k in env if k.startswith(("SLURM_", "PMI", "OMPI_")) and k != "SLURM_CONF"]:
            del env[name]  # a pytest run inside an allocation must not leak its own job
        return env

    def run(self, argv: list, env: dict[str, str] | None = None, timeout: float = 120, cwd=None):
        return subprocess.run([str(a) for a in argv], env=env or self.env(), capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL, cwd=cwd)

    def sbatch(self, *args, env: dict[str, str] | None = None, cwd=None, status: int = 0) -> str:
        """Submit; returns the job id. With --wait, sbatch exits with the job's `status`."""
        cp = self.run(["sbatch", "--parsable", *args], env=env, cwd=cwd, timeout=300)
        assert cp.returncode == status, cp.stderr
        return cp.stdout.strip().split(";")[0]

    def wait_gone(self, job: str, timeout: float = 180) -> None:
        """Until the job (every array task) has left the queue."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            cp = self.run(["squeue", "-h", "-j", job, "-o", "%i %T"])
            if cp.returncode == 0 and not cp.stdout.strip():
                return
            time.sleep(0.2)
        raise AssertionError(f"job {job} still queued after {timeout}s: {cp.stdout}")

    def wait_running(self, job: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            cp = self.run(["squeue", "-h", "-j", job, "-o", "%T"])
            if cp.stdout.strip() == "RUNNING":
                return
            time.sleep(0.2)
        raise AssertionError(f"job {job} did not start in {timeout}s")

    def job_field(self, job: str, name: str) -> str:
        """A field of `scontrol show job` (no accounting here, so no sacct)."""
        cp = self.run(["scontrol", "-o", "show", "job", job])
        for word in cp.stdout.split():
            if word.startswith(name + "="):
                return word.partition("=")[2]
        return ""


@pytest.fixture(scope="session")
def slurm() -> Slurm:
    conf = os.environ.get("SLURM_CONF") or DEFAULT_CONF
    if not Path(conf).is_file():
        pytest.skip(f"Slurm is not up: no {conf} (sudo scripts/slurm up; scripts/test starts it)")
    s = Slurm(conf)
    try:
        ping = s.run(["scontrol", "ping"], timeout=30)
        nodes = s.run(["sinfo", "-h", "-o", "%t"], timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"Slurm is not up: {exc} (sudo scripts/slurm up)")
    if "is UP" not in ping.stdout or not {"idle", "mix", "alloc"} & set(nodes.stdout.split()):
        said = (ping.stdout.strip().splitlines() or ["no answer"])[0]
        pytest.skip(f"Slurm is not up: {said} {nodes.stdout.strip()} (sudo scripts/slurm up)")
    return s


@pytest.fixture
def shared_dir(tmp_path: Path) -> Path:
    """A directory jobs write into (the job's user is the test's, but keep it enterable)."""
    os.chmod(tmp_path, 0o755)
    return tmp_path


OPENMPI = "debian-bookworm-openmpi"


@pytest.fixture(scope="session")
def openmpi_image(registry_images) -> str:
    """test/openmpi:12 in the loopback registry: Debian 12 minbase + OpenMPI + gcc
    (the cached fixture scripts/fixtures builds; its layout is cached beside it)."""
    from tests.helpers import fixtures_root
    from tests.helpers.images import DEBIAN_ENV, _key, cached_layout
    from tests.registry.regserver import ImageSpec, build_layout, push

    tar = fixtures_root() / f"{OPENMPI}.tar"
    key_file = fixtures_root() / f"{OPENMPI}.key"
    if not tar.is_file() or not key_file.is_file():
        pytest.fail(f"cached test fixture {OPENMPI} is missing at {tar}: run `sudo scripts/fixtures` "
                    f"(or `sudo scripts/test`) first", pytrace=False)

    def build(dest: Path) -> None:
        spec = ImageSpec("linux/amd64", [tar.read_bytes()], config={"config": {"Env": DEBIAN_ENV, "Cmd": ["bash"]}},
                         compression="none")  # a local registry: gzip would cost more than it saves
        build_layout(dest, [spec], tag="12")

    layout = cached_layout("openmpi", _key("v1", key_file.read_text().strip()), build)
    push(layout, registry_images.registry, "test/openmpi:12")
    return f"{registry_images.host}/test/openmpi:12"
