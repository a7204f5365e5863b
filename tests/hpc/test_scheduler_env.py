"""The scheduler's environment reaches the container (ocirun/run/scheduler.py)."""

from __future__ import annotations

import sys

from ocirun.run.options import RunOptions
from ocirun.run.plan import build_run_plan
from ocirun.run.scheduler import SCHEDULER_ENV, passes, rendezvous_dirs, scheduler_env
from tests.helpers import run_ocirun

JOB = {"SLURM_JOB_ID": "12", "SLURM_PROCID": "1", "PMIX_RANK": "1", "OMPI_MCA_btl": "self,tcp",
       "CUDA_VISIBLE_DEVICES": "0,1", "ROCR_VISIBLE_DEVICES": "2", "HOME": "/home/u", "SECRET": "x"}


def plan_env(host_env: dict[str, str], env: dict[str, str] | None = None, tmp_path=None) -> dict[str, str]:
    opts = RunOptions(image="img", command=["true"], env=env or {})
    return build_run_plan(opts, {"config": {"Env": ["OMPI_MCA_btl=^openib"]}}, tmp_path, "c" * 64,
                          host_env=host_env).env


def test_scheduler_variables_pass_only_under_a_scheduler(tmp_path) -> None:
    env = plan_env(JOB, tmp_path=tmp_path)
    for name in ("SLURM_JOB_ID", "SLURM_PROCID", "PMIX_RANK", "CUDA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES"):
        assert env[name] == JOB[name]
    assert env["OMPI_MCA_btl"] == "self,tcp"  # the job's value over the image's
    assert "SECRET" not in env and env["HOME"] == "/root"
    outside = {k: v for k, v in JOB.items() if k not in ("SLURM_JOB_ID", "PMIX_RANK")}
    assert "CUDA_VISIBLE_DEVICES" not in plan_env(outside, tmp_path=tmp_path)
    assert scheduler_env({**JOB, "OCIRUN_SCHEDULER_ENV": "0"}) == {}


def test_the_container_keeps_the_nodes_hostname_under_a_scheduler(tmp_path) -> None:
    import socket

    opts = RunOptions(image="img", command=["true"])
    assert build_run_plan(opts, {}, tmp_path, "c" * 64, host_env=JOB).hostname == socket.gethostname()
    assert build_run_plan(opts, {}, tmp_path, "c" * 64, host_env={}).hostname == "c" * 12
    opts.hostname = "mine"
    assert build_run_plan(opts, {}, tmp_path, "c" * 64, host_env=JOB).hostname == "mine"


def test_dash_e_wins(tmp_path) -> None:
    env = plan_env(JOB, {"SLURM_PROCID": "7", "CUDA_VISIBLE_DEVICES": ""}, tmp_path)
    assert env["SLURM_PROCID"] == "7" and env["CUDA_VISIBLE_DEVICES"] == ""


def test_table_is_documented() -> None:
    assert all(kind in ("prefix", "name") and text and why for kind, text, why in SCHEDULER_ENV)
    assert passes("SLURM_NTASKS") and passes("PMI_FD") and not passes("SLURMX") and not passes("PATH")


def test_pmix_rendezvous_directory_is_bound(tmp_path) -> None:
    host_env = {**JOB, "PMIX_SERVER_TMPDIR": str(tmp_path), "PMIX_SYSTEM_TMPDIR": "/does/not/exist"}
    assert rendezvous_dirs(host_env) == [str(tmp_path)]
    opts = RunOptions(image="img", command=["true"])
    plan = build_run_plan(opts, {}, tmp_path, "c" * 64, host_env=host_env)
    assert [(v.host, v.guest) for v in plan.volumes] == [(str(tmp_path), str(tmp_path))]


def test_srun_ranks_reach_the_container(slurm, registry_images, shared_dir) -> None:
    """Two tasks of one step: `srun -n 2 ocirun run --rm IMAGE sh -c 'echo $SLURM_PROCID'`."""
    env = slurm.env({"OCIRUN_ROOT": str(shared_dir / "store")})
    assert run_ocirun("pull", "-q", registry_images.busybox, env=env).returncode == 0
    argv = ["srun", "-n", "2", sys.executable, "-m", "ocirun", "run", "--rm", registry_images.busybox]
    cp = slurm.run([*argv, "sh", "-c", "echo $SLURM_PROCID"], env=env, cwd=shared_dir)
    assert cp.returncode == 0 and sorted(cp.stdout.split()) == ["0", "1"], cp.stderr
    argv.insert(-1, "-e")
    argv.insert(-1, "SLURM_PROCID=x")
    cp = slurm.run([*argv, "sh", "-c", "echo $SLURM_PROCID"], env=env, cwd=shared_dir)
    assert cp.returncode == 0 and cp.stdout.split() == ["x", "x"], cp.stderr
