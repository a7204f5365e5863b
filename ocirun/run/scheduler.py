"""The batch scheduler's environment, passed into the container (README "On a cluster").

A task started by Slurm (`srun`, `sbatch`), PBS, LSF, Flux or an MPI launcher learns
who it is from its environment: rank, job id, the PMI/PMIx rendezvous, its GPUs. A
container that dropped those variables would run every rank as rank 0. So, when ocirun
itself runs under a scheduler (one of SCHEDULER_MARKERS is set), the variables below
pass into the guest by default, after the image's Env and before `-e`/`--env-file`,
which still win. OCIRUN_SCHEDULER_ENV=0 turns it off.

The PMIx and PMI rendezvous are UNIX sockets in directories the launcher names in the
environment: those directories are bound into the guest at the same path, or the
guest's MPI could not reach its launcher. And the container keeps the node's host
name (as Apptainer does), since MPI libraries compare it with the launcher's node list
to find the ranks on their own node; `--hostname` still wins.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

# Any of these set: ocirun runs as a task of a scheduler or an MPI launcher.
SCHEDULER_MARKERS: tuple[str, ...] = (
    "SLURM_JOB_ID",
    "SLURM_JOBID",
    "PBS_JOBID",
    "LSB_JOBID",
    "FLUX_JOB_ID",
    "PMIX_RANK",
    "PMI_RANK",
    "OMPI_COMM_WORLD_RANK",
)

# (kind, text, what it is for). kind "prefix" passes every variable whose name starts
# with text; "name" passes that one variable.
SCHEDULER_ENV: tuple[tuple[str, str, str], ...] = (
    ("prefix", "SLURM_", "Slurm: job, step, task ids, rank (SLURM_PROCID), node list"),
    ("prefix", "PMI_", "PMI-1/PMI-2 rendezvous (srun --mpi=pmi2, MPICH's hydra)"),
    ("prefix", "PMIX_", "PMIx rendezvous (srun --mpi=pmix, OpenMPI's prterun/mpirun)"),
    ("prefix", "OMPI_", "OpenMPI's launcher and MCA parameters"),
    ("prefix", "PRTE_", "OpenMPI 5's runtime (PRRTE)"),
    ("prefix", "HYDRA_", "MPICH's launcher"),
    ("prefix", "I_MPI_", "Intel MPI settings"),
    ("prefix", "MPI_", "MPI_LOCALRANKID and launcher settings"),
    ("prefix", "UCX_", "UCX transport settings"),
    ("prefix", "PBS_", "PBS/Torque job ids"),
    ("prefix", "LSB_", "LSF job ids"),
    ("prefix", "FLUX_", "Flux job ids"),
    ("name", "CUDA_VISIBLE_DEVICES", "the NVIDIA GPUs the scheduler gave this task"),
    ("name", "NVIDIA_VISIBLE_DEVICES", "the same, as the NVIDIA container runtime names it"),
    ("name", "ROCR_VISIBLE_DEVICES", "the AMD GPUs the scheduler gave this task"),
    ("name", "HIP_VISIBLE_DEVICES", "the same, for HIP programs"),
    ("name", "GPU_DEVICE_ORDINAL", "Slurm's GPU list for OpenCL/other runtimes"),
    ("name", "ZE_AFFINITY_MASK", "Intel GPUs"),
    ("name", "OMP_NUM_THREADS", "threads per task (srun --cpus-per-task)"),
)

# Variables naming host directories the launcher's sockets live in: bound in as they are.
RENDEZVOUS_DIRS: tuple[str, ...] = (
    "PMIX_SERVER_TMPDIR",
    "PMIX_SYSTEM_TMPDIR",
    "PMIX_TMPDIR",
    "SLURM_PMIX_TMPDIR",
)


def under_scheduler(host_env: Mapping[str, str]) -> bool:
    """True when ocirun runs as a scheduler's task and passing its environment is not off."""
    if host_env.get("OCIRUN_SCHEDULER_ENV", "1").lower() in ("0", "no", "false", "off"):
        return False
    return any(host_env.get(m) for m in SCHEDULER_MARKERS)


def passes(name: str) -> bool:
    """Whether the table passes variable `name` into the guest."""
    for kind, text, _ in SCHEDULER_ENV:
        if (kind == "prefix" and name.startswith(text)) or (kind == "name" and name == text):
            return True
    return False


def scheduler_env(host_env: Mapping[str, str]) -> dict[str, str]:
    """The scheduler's variables of `host_env` (empty when not under a scheduler)."""
    if not under_scheduler(host_env):
        return {}
    return {k: v for k, v in host_env.items() if passes(k)}


def rendezvous_dirs(host_env: Mapping[str, str]) -> list[str]:
    """Host directories the launcher's PMI/PMIx sockets are in (existing ones, deduplicated)."""
    if not under_scheduler(host_env):
        return []
    out: list[str] = []
    for name in RENDEZVOUS_DIRS:
        path = host_env.get(name, "")
        if path.startswith("/") and os.path.isdir(path) and path not in out:
            out.append(os.path.normpath(path))
    return out


def scheduler_hostname(host_env: Mapping[str, str]) -> str | None:
    """The node's host name for a container run by a scheduler (None otherwise)."""
    if not under_scheduler(host_env):
        return None
    import socket  # (only under a scheduler: start-up time of every run)

    return socket.gethostname()
