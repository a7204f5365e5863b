"""--gpus/--nv/--rocm on a fake driver tree (OCIRUN_GPU_ROOT): what is bound where.

The tree stands for a host with two NVIDIA GPUs (or one AMD GPU): device nodes as
plain files, the driver's libraries as real ELF stubs built here (so the guest's
dynamic linker really loads them, found through the tree's own ld.so.cache made by
`ldconfig -r`), nvidia-smi/rocm-smi as scripts. On a real GPU machine, see the README.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.helpers import assert_one_line_error, run_ocirun

LIBDIR = "usr/lib/x86_64-linux-gnu"
SMI = '#!/bin/sh\necho "smi NVIDIA_VISIBLE_DEVICES=$NVIDIA_VISIBLE_DEVICES CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES"\n'


def stub_library(path: Path, soname: str, body: str) -> None:
    src = path.with_suffix(".c")
    src.write_text(body)
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(path), f"-Wl,-soname,{soname}", str(src)], check=True)
    src.unlink()
    (path.parent / soname).symlink_to(path.name)


def write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


@pytest.fixture(scope="module")
def nvidia_tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("gpu-root")
    os.chmod(root, 0o755)
    for dev in ("nvidiactl", "nvidia0", "nvidia1", "nvidia-uvm"):
        write(root / "dev" / dev, f"fake {dev}\n", 0o666)
    (root / LIBDIR).mkdir(parents=True)
    stub_library(root / LIBDIR / "libcuda.so.535.104.05", "libcuda.so.1", "int cuInit(int f) { return 535 + f; }\n")
    stub_library(root / LIBDIR / "libnvidia-ml.so.535.104.05", "libnvidia-ml.so.1", "int nvmlInit(void) { return 0; }\n")
    stub_library(root / LIBDIR / "libfoo.so.1.0", "libfoo.so.1", "int foo(void) { return 0; }\n")  # not the driver's
    write(root / "etc/ld.so.conf", f"/{LIBDIR}\n")
    subprocess.run(["ldconfig", "-r", str(root)], check=True, env={"PATH": "/usr/sbin:/sbin:/usr/bin:/bin"})
    write(root / "usr/bin/nvidia-smi", SMI, 0o755)
    return root


@pytest.fixture(scope="module")
def probe(nvidia_tree, tmp_path_factory) -> Path:
    """A program linked against the stub libcuda (its DT_NEEDED is libcuda.so.1)."""
    d = tmp_path_factory.mktemp("gpu-probe")
    os.chmod(d, 0o755)
    (d / "probe.c").write_text('#include <stdio.h>\nint cuInit(int);\n'
                               'int main(void) { printf("cuInit=%d\\n", cuInit(0)); return 0; }\n')
    subprocess.run(["gcc", "-o", str(d / "probe"), str(d / "probe.c"),
                    str(nvidia_tree / LIBDIR / "libcuda.so.535.104.05")], check=True)
    return d


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("gpu-store")
    os.chmod(root, 0o755)
    return root


def gpu_run(store: Path, root: Path, image: str, *args: str, env: dict[str, str] | None = None):
    return run_ocirun("run", "--rm", *args[:-1], image, "sh", "-c", args[-1],
                      env={"OCIRUN_ROOT": str(store), "OCIRUN_GPU_ROOT": str(root), **(env or {})})


def test_gpus_all_binds_devices_libraries_and_nvidia_smi(store, nvidia_tree, probe, registry_images) -> None:
    cp = gpu_run(store, nvidia_tree, registry_images.debian, "--gpus", "all", "-v", f"{probe}:/probe:ro",
                 "cat /dev/nvidiactl /dev/nvidia0 /dev/nvidia1 /dev/nvidia-uvm; /probe/probe; nvidia-smi; "
                 "echo $LD_LIBRARY_PATH; ls /.ocirun/gpu/lib")
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout.splitlines() == [
        "fake nvidiactl", "fake nvidia0", "fake nvidia1", "fake nvidia-uvm", "cuInit=535",
        "smi NVIDIA_VISIBLE_DEVICES=all CUDA_VISIBLE_DEVICES=", "/.ocirun/gpu/lib",
        "libcuda.so.1", "libnvidia-ml.so.1"], cp.stdout
    without = gpu_run(store, nvidia_tree, registry_images.debian, "-v", f"{probe}:/probe:ro", "/probe/probe")
    assert without.returncode == 127 and "libcuda.so.1" in without.stderr  # nothing without the flag


@pytest.mark.parametrize(("flag", "present", "absent", "ids"), [
    ("1", "/dev/nvidia0", "/dev/nvidia1", "0"),
    ("device=1", "/dev/nvidia1", "/dev/nvidia0", "1"),
    ("device=0,1", "/dev/nvidia1", "/dev/nvidia9", "0,1"),
])
def test_gpu_selection(store, nvidia_tree, registry_images, flag, present, absent, ids) -> None:
    cp = gpu_run(store, nvidia_tree, registry_images.busybox, "--gpus", flag,
                 f"[ -e {present} ] && [ ! -e {absent} ] && nvidia-smi")
    assert cp.returncode == 0 and cp.stdout == f"smi NVIDIA_VISIBLE_DEVICES={ids} CUDA_VISIBLE_DEVICES={ids}\n", \
        cp.stdout + cp.stderr


def test_nv_keeps_the_schedulers_choice_and_dash_e_wins(store, nvidia_tree, registry_images) -> None:
    job = {"SLURM_JOB_ID": "5", "CUDA_VISIBLE_DEVICES": "1"}
    cp = gpu_run(store, nvidia_tree, registry_images.busybox, "--nv", "nvidia-smi", env=job)
    assert cp.stdout == "smi NVIDIA_VISIBLE_DEVICES=all CUDA_VISIBLE_DEVICES=1\n", cp.stderr
    cp = gpu_run(store, nvidia_tree, registry_images.busybox, "--nv", "-e", "CUDA_VISIBLE_DEVICES=0", "nvidia-smi",
                 env=job)
    assert cp.stdout == "smi NVIDIA_VISIBLE_DEVICES=all CUDA_VISIBLE_DEVICES=0\n", cp.stderr


def test_rocm(store, registry_images, tmp_path) -> None:
    root = tmp_path / "rocm"
    for dev in ("kfd", "dri/card0", "dri/renderD128"):
        write(root / "dev" / dev, f"fake {dev}\n", 0o666)
    (root / "opt/rocm/lib").mkdir(parents=True)
    stub_library(root / "opt/rocm/lib/libamdhip64.so.5.7.0", "libamdhip64.so.5", "int hipInit(int f) { return f; }\n")
    write(root / "usr/bin/rocm-smi", '#!/bin/sh\necho "rocm-smi ROCR_VISIBLE_DEVICES=$ROCR_VISIBLE_DEVICES"\n', 0o755)
    os.chmod(tmp_path, 0o755)
    cp = gpu_run(store, root, registry_images.busybox, "--rocm",
                 "cat /dev/kfd /dev/dri/renderD128; rocm-smi; echo $LD_LIBRARY_PATH; ls /.ocirun/gpu/lib",
                 env={"SLURM_JOB_ID": "5", "ROCR_VISIBLE_DEVICES": "0"})
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout.splitlines() == ["fake kfd", "fake dri/renderD128", "rocm-smi ROCR_VISIBLE_DEVICES=0",
                                      "/.ocirun/gpu/lib", "libamdhip64.so.5"], cp.stdout


@pytest.mark.parametrize(("args", "message"), [
    (["--gpus", "3"], "this host has 2"),
    (["--gpus", "device=7"], "no such NVIDIA GPU"),
    (["--gpus", "lots"], "invalid --gpus"),
])
def test_bad_requests(store, nvidia_tree, registry_images, args, message) -> None:
    line = assert_one_line_error(gpu_run(store, nvidia_tree, registry_images.busybox, *args, "true"), 125)
    assert message in line


@pytest.mark.parametrize("flag", ["--gpus=all", "--nv", "--rocm"])
def test_no_gpu_is_one_line_and_125(store, registry_images, tmp_path, flag) -> None:
    line = assert_one_line_error(gpu_run(store, tmp_path, registry_images.busybox, flag, "true"), 125)
    assert "GPU on this host" in line
    if not os.path.exists("/dev/nvidiactl"):  # this machine's own driver root
        cp = run_ocirun("run", "--rm", "--gpus", "all", registry_images.busybox, "true",
                        env={"OCIRUN_ROOT": str(store)})
        assert "no NVIDIA GPU" in assert_one_line_error(cp, 125)
