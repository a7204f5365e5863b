"""ocirun under a real Slurm: array jobs on one store, srun steps, exit codes, scancel.

The cluster is the single node of scripts/slurm; images come from the loopback test
registry, which the jobs reach on 127.0.0.1 like the tests do.
"""

from __future__ import annotations

import os
import shlex
import sys
import time
import uuid
from pathlib import Path

from tests.helpers import REPO_ROOT, run_ocirun

EXAMPLES = REPO_ROOT / "examples"
OCIRUN = f"{shlex.quote(sys.executable)} -m ocirun"


def job_env(slurm, store: Path, image: str, **extra: str) -> dict[str, str]:
    return slurm.env({"OCIRUN_ROOT": str(store), "IMAGE": image, "OCIRUN": OCIRUN, **extra})


def write_script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\nset -u\n" + body)
    path.chmod(0o755)
    return path


def test_array_job_pulls_once_into_one_fresh_store(slurm, registry_images, shared_dir) -> None:
    """examples/slurm-array.sbatch as is: 4 tasks at once, the first pulls, the others reuse."""
    store, work = shared_dir / "store", shared_dir / "work"
    work.mkdir()
    env = job_env(slurm, store, registry_images.busybox, WORKDIR=str(work))
    job = slurm.sbatch("--wait", EXAMPLES / "slurm-array.sbatch", env=env, cwd=work)
    slurm.wait_gone(job)
    for task in range(4):
        out = (work / f"ocirun-array-{job}_{task}.out").read_text()
        want = f"sum={sum(range(1, task + 4))}"
        assert f"task {task} on " in out and want in out, out
        assert (work / "out" / f"task-{task}.txt").read_text().startswith(f"task {task} on ")
    images = run_ocirun("--root", store, "images", "-q", "--no-trunc")
    assert images.returncode == 0 and len(images.stdout.split()) == 1, images.stdout
    assert len(os.listdir(store / "images")) == 1
    assert "array-" not in run_ocirun("--root", store, "ps", "-a").stdout  # --rm


def test_srun_steps_inside_a_batch_job(slurm, registry_images, shared_dir) -> None:
    """`srun -n 2 ocirun run` in a batch job: two containers, each with its own rank."""
    store = shared_dir / "store"
    assert run_ocirun("--root", store, "pull", "-q", registry_images.busybox).returncode == 0
    script = write_script(shared_dir / "steps.sbatch", (
        '$OCIRUN run --rm "$IMAGE" true\n'
        'srun -n 2 -l $OCIRUN run --rm "$IMAGE" sh -c \'echo "rank $SLURM_PROCID of $SLURM_NTASKS"\'\n'
        'echo "step status $?"\n'))
    job = slurm.sbatch("--wait", "-n", "2", "-o", shared_dir / "steps.out", script,
                       env=job_env(slurm, store, registry_images.busybox), cwd=shared_dir)
    out = (shared_dir / "steps.out").read_text()
    lines = sorted(line for line in out.splitlines() if "rank" in line)
    assert lines == ["0: rank 0 of 2", "1: rank 1 of 2"], out
    assert "step status 0" in out
    assert slurm.job_field(job, "ExitCode") == "0:0"


def test_failing_step_exit_status_reaches_srun(slurm, registry_images, shared_dir) -> None:
    store = shared_dir / "store"
    assert run_ocirun("--root", store, "pull", "-q", registry_images.busybox).returncode == 0
    env = job_env(slurm, store, registry_images.busybox)
    cp = slurm.run(["srun", "-n", "1", sys.executable, "-m", "ocirun", "run", "--rm", registry_images.busybox,
                    "sh", "-c", "echo failing; exit 7"], env=env, cwd=shared_dir)
    assert cp.returncode == 7 and "failing" in cp.stdout, cp.stderr
    script = write_script(shared_dir / "fail.sbatch", (
        'srun -n 1 $OCIRUN run --rm "$IMAGE" sh -c "exit 5"\n'
        'echo "srun said $?"\n'
        'exit 3\n'))
    job = slurm.sbatch("--wait", "-o", shared_dir / "fail.out", script, env=env, cwd=shared_dir,
                       status=3)
    assert "srun said 5" in (shared_dir / "fail.out").read_text()
    assert slurm.job_field(job, "ExitCode") == "3:0"


def _job_processes(job: str, token: str) -> list[str]:
    """Processes of ours that belong to the job (its SLURM_JOB_ID) or show the token."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if f"SLURM_JOB_ID={job}".encode() in environ or token.encode() in cmdline:
            found.append(f"{pid}: {cmdline.decode(errors='replace')}")
    return found


def test_scancel_leaves_no_process_behind(slurm, registry_images, shared_dir) -> None:
    store = shared_dir / "store"
    assert run_ocirun("--root", store, "pull", "-q", registry_images.busybox).returncode == 0
    token = f"hpc-cancel-{uuid.uuid4().hex[:8]}"
    script = write_script(shared_dir / "cancel.sbatch", (
        f'srun -n 1 $OCIRUN run --rm --name {token} "$IMAGE" sh -c "sleep 600 & sleep 600; : {token}"\n'))
    job = slurm.sbatch("-o", shared_dir / "cancel.out", script,
                       env=job_env(slurm, store, registry_images.busybox), cwd=shared_dir)
    try:
        slurm.wait_running(job)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(_job_processes(job, token)) < 4:
            time.sleep(0.2)  # slurmstepd's children: srun, ocirun, sh and its two sleeps
        assert any(token in p and "sh -c" in p for p in _job_processes(job, token)), _job_processes(job, token)
    finally:
        slurm.run(["scancel", job])
    slurm.wait_gone(job, timeout=60)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _job_processes(job, token):
        time.sleep(0.2)
    assert _job_processes(job, token) == []
    assert token not in run_ocirun("--root", store, "ps", "-a").stdout  # --rm ran on SIGTERM
