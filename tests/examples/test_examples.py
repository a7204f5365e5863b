"""The examples/ scripts, run as a user would, against the loopback registry's images.

Each script takes its image from $IMAGE and its ocirun from $OCIRUN, so the tests
point them at the loopback registry and at this checkout's CLI.
"""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT, ocirun_env, run_ocirun

EXAMPLES = REPO_ROOT / "examples"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("examples-store")
    os.chmod(root, 0o755)
    return root


def script_env(store: Path, image: str, **extra: str) -> dict[str, str]:
    env = ocirun_env({"OCIRUN_ROOT": str(store), "IMAGE": image,
                      "OCIRUN": f"{shlex.quote(sys.executable)} -m ocirun", **extra})
    return env


def run_script(argv: list, env: dict[str, str], timeout: float = 300, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, cwd=cwd)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_arm64_on_x86(store, registry_images) -> None:
    cp = run_script([EXAMPLES / "arm64-on-x86.sh"], script_env(store, registry_images.busybox))
    assert cp.returncode == 0, cp.stderr
    assert "machine inside the container: aarch64" in cp.stdout
    cp = run_script([EXAMPLES / "arm64-on-x86.sh", "uname", "-m"], script_env(store, registry_images.debian))
    if "linux/arm64/v8" in registry_images.debian_platforms:
        assert cp.returncode == 0 and cp.stdout == "aarch64\n", cp.stderr


def test_slurm_array_tasks_share_one_store(store, registry_images, tmp_path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    os.chmod(tmp_path, 0o755)
    procs = [
        subprocess.Popen([str(EXAMPLES / "slurm-array.sbatch")],
                         env=script_env(store, registry_images.busybox, SLURM_ARRAY_TASK_ID=str(task),
                                        SLURM_ARRAY_JOB_ID="42", WORKDIR=str(work)),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
        for task in range(4)
    ]
    for task, p in enumerate(procs):
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        want = sum(range(1, task + 4))
        assert f"task {task} on " in out and f"sum={want}" in out
        assert (work / "out" / f"task-{task}.txt").read_text() == out
    cp = run_ocirun("--root", store, "ps", "-a")
    assert "array-42" not in cp.stdout  # --rm: nothing left behind
    unset = run_script([EXAMPLES / "slurm-array.sbatch"], script_env(store, registry_images.busybox))
    assert unset.returncode != 0 and "SLURM_ARRAY_TASK_ID" in unset.stderr


def test_web_server_on_unprivileged_port(store, registry_images, tmp_path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("<p>example page</p>\n")
    os.chmod(tmp_path, 0o755)
    port = free_port()
    env = script_env(store, registry_images.busybox, NAME="example-web")
    try:
        cp = run_script([EXAMPLES / "web-server.sh", port, site], env)
        assert cp.returncode == 0, cp.stderr
        assert f"http://127.0.0.1:{port}/" in cp.stdout
        deadline = time.monotonic() + 30
        body = ""
        while time.monotonic() < deadline and not body:
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).read().decode()
            except OSError:
                time.sleep(0.2)
        assert body == "<p>example page</p>\n"
    finally:
        run_ocirun("--root", store, "rm", "-f", "example-web")
    assert "example-web" not in run_ocirun("--root", store, "ps", "-a").stdout


@pytest.mark.slow
@pytest.mark.network
@pytest.mark.timeout(1800)  # apt-get of gcc under the engine: ~2.5 min on a quiet machine
def test_ci_build_inside_debian(store, registry_images, tmp_path) -> None:
    """Installs gcc with apt-get inside the container (Debian's archive), then builds and tests."""
    project = tmp_path / "project"
    subprocess.run(["cp", "-r", str(EXAMPLES / "ci-project"), str(project)], check=True)
    os.chmod(tmp_path, 0o755)
    subprocess.run(["chmod", "-R", "a+rwX", str(project)], check=True)
    env = script_env(store, registry_images.debian, BUILDER="ci-test-builder", TMPDIR=str(tmp_path))
    try:
        cp = run_script([EXAMPLES / "ci-build.sh", project], env, timeout=1500)
        assert cp.returncode == 0, cp.stdout + cp.stderr + (tmp_path / "ci-builder-apt.log").read_text()
        assert "test_wc: ok" in cp.stdout and "all tests passed" in cp.stdout
        assert (project / "wordcount").is_file()
        # the second job reuses the builder: no apt-get, a few seconds
        t0 = time.monotonic()
        cp = run_script([EXAMPLES / "ci-build.sh", project], env, timeout=300)
        assert cp.returncode == 0 and "all tests passed" in cp.stdout, cp.stderr
        assert time.monotonic() - t0 < 120
        # a failing test fails the job
        (project / "test_wc.c").write_text((project / "test_wc.c").read_text().replace("== 3", "== 4"))
        cp = run_script([EXAMPLES / "ci-build.sh", project], env, timeout=300)
        assert cp.returncode != 0
    finally:
        run_ocirun("--root", store, "rm", "-f", "ci-test-builder")


def test_quick_start_builds_and_runs_offline(store) -> None:
    """The README's first command: an image from examples/hello with the host's /bin as context."""
    env = {"OCIRUN_ROOT": str(store)}
    cp = run_ocirun("build", "-q", "-t", "hello", "-f", EXAMPLES / "hello/Dockerfile", "/bin", env=env, timeout=300)
    assert cp.returncode == 0, cp.stderr
    cp = run_ocirun("run", "--rm", "hello", env=env)
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout.startswith("hello from Linux, in an image ocirun built\n") and "\nbin\n" in cp.stdout


def test_ci_image_builds_tests_and_pushes(store, registry_images, tmp_path) -> None:
    dest = f"{registry_images.host}/examples/ci-image:1"
    cp = run_script([EXAMPLES / "ci-image.sh", dest], script_env(store, registry_images.busybox), timeout=600)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert "test.sh: ok" in cp.stdout and "Successfully built" in cp.stdout
    out = subprocess.run(["skopeo", "inspect", "--tls-verify=false", "--config", f"docker://{dest}"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert '"/opt/app/greet.sh"' in out.stdout
    # a broken image fails the job before anything is pushed
    copy = tmp_path / "examples"
    copy.mkdir()
    subprocess.run(["cp", "-r", str(EXAMPLES / "ci-image"), str(EXAMPLES / "ci-image.sh"), str(copy)], check=True)
    greet = copy / "ci-image/app/greet.sh"
    greet.write_text(greet.read_text().replace("hello from", "bye from"))
    cp = run_script([copy / "ci-image.sh", f"{registry_images.host}/examples/ci-image:broken"],
                    script_env(store, registry_images.busybox), timeout=600)
    assert cp.returncode != 0 and "unexpected output" in cp.stderr
