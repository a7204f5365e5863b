"""MPI, the hybrid model: Slurm's `srun --mpi=pmix` starts one `ocirun run` per rank,
the image (Debian 12 + OpenMPI 4.1, the openmpi_image fixture) carries the MPI.

examples/slurm-mpi.sbatch builds examples/mpi-hello.c with the image's mpicc, then
runs it on two tasks: a token goes round the ring and an allreduce sums the ranks,
so the two containers really talk to each other.
"""

from __future__ import annotations

import shutil
import socket
import sys
import time

from tests.helpers import REPO_ROOT, run_ocirun

EXAMPLES = REPO_ROOT / "examples"


def test_two_ranks_talk_under_srun(slurm, openmpi_image, shared_dir) -> None:
    store, work = shared_dir / "store", shared_dir / "work"
    work.mkdir()
    shutil.copy(EXAMPLES / "mpi-hello.c", work)
    t0 = time.monotonic()
    assert run_ocirun("--root", store, "pull", "-q", openmpi_image, timeout=600).returncode == 0
    pulled = time.monotonic() - t0
    env = slurm.env({"OCIRUN_ROOT": str(store), "IMAGE": openmpi_image, "WORKDIR": str(work),
                     "OCIRUN": f"{sys.executable} -m ocirun"})
    job = slurm.sbatch("--wait", "-n", "2", "-o", work / "mpi.out", EXAMPLES / "slurm-mpi.sbatch", env=env, cwd=work)
    out = (work / "mpi.out").read_text()
    node = socket.gethostname()
    lines = sorted(line for line in out.splitlines() if line.startswith(("rank", "token")))
    assert lines == [f"rank 0 of 2 on {node}: sum of ranks 1", f"rank 1 of 2 on {node}: sum of ranks 1",
                     "token back at rank 0 after 2 ranks"], f"job {job} (pull {pulled:.0f}s):\n{out}"
    assert (work / "mpi-hello").is_file()  # built by the image's mpicc
