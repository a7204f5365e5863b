"""MPI, the hybrid model: the host's launcher starts one `ocirun run` per rank, the image
(Debian 12 + OpenMPI 4.1, the openmpi_image fixture) carries the MPI.

examples/slurm-mpi.sbatch builds examples/mpi-hello.c with the image's mpicc, then
runs it with `srun --mpi=pmix` on two tasks; the host's own `mpirun -n 2` does the same
without Slurm. A token goes round the ring and an allreduce sums the ranks, so the two
containers really talk to each other.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT, is_root, ocirun_argv, ocirun_env, run_ocirun

EXAMPLES = REPO_ROOT / "examples"


def expected() -> list[str]:
    node = socket.gethostname()
    return [f"rank 0 of 2 on {node}: sum of ranks 1", f"rank 1 of 2 on {node}: sum of ranks 1",
            "token back at rank 0 after 2 ranks"]


def ranks_output(out: str) -> list[str]:
    return sorted(line for line in out.splitlines() if line.startswith(("rank", "token")))


@pytest.fixture(scope="module")
def mpi_work(openmpi_image, tmp_path_factory) -> tuple[Path, Path]:
    """(store with the image pulled, work dir holding mpi-hello.c)."""
    base = tmp_path_factory.mktemp("mpi")
    os.chmod(base, 0o755)
    store, work = base / "store", base / "work"
    work.mkdir()
    shutil.copy(EXAMPLES / "mpi-hello.c", work)
    assert run_ocirun("--root", store, "pull", "-q", openmpi_image, timeout=600).returncode == 0
    return store, work


def test_two_ranks_talk_under_srun(slurm, openmpi_image, mpi_work) -> None:
    store, work = mpi_work
    env = slurm.env({"OCIRUN_ROOT": str(store), "IMAGE": openmpi_image, "WORKDIR": str(work),
                     "OCIRUN": f"{sys.executable} -m ocirun"})
    job = slurm.sbatch("--wait", "-n", "2", "-o", work / "mpi.out", EXAMPLES / "slurm-mpi.sbatch", env=env, cwd=work)
    out = (work / "mpi.out").read_text()
    assert ranks_output(out) == expected(), f"job {job}:\n{out}"
    assert (work / "mpi-hello").is_file()  # built by the image's mpicc


def test_two_ranks_talk_under_the_hosts_mpirun(openmpi_image, mpi_work) -> None:
    mpirun = shutil.which("mpirun")
    assert mpirun, "the host's OpenMPI (openmpi-bin, scripts/deps/apt.txt) is missing"
    store, work = mpi_work
    env = {"OCIRUN_ROOT": str(store)}
    if not (work / "mpi-hello").is_file():
        cp = run_ocirun("run", "--rm", "-v", f"{work}:/work", "-w", "/work", openmpi_image,
                        "mpicc", "-O1", "-o", "mpi-hello", "mpi-hello.c", env=env, timeout=600)
        assert cp.returncode == 0, cp.stderr
    rank = ocirun_argv("run", "--rm", "-u", f"{os.getuid()}:{os.getgid()}", "-v", f"{work}:/work", "-w", "/work",
                       openmpi_image, "./mpi-hello")
    launcher = [mpirun, "-n", "2", "--oversubscribe", *(["--allow-run-as-root"] if is_root() else [])]
    cp = run_ocirun_argv([*launcher, *rank], env)
    assert cp.returncode == 0 and ranks_output(cp.stdout) == expected(), cp.stdout + cp.stderr


def run_ocirun_argv(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(argv, env=ocirun_env(env), capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL)
