"""Load: many containers at once from one image, concurrent pulls sharing a base
layer, `ps`/`rm` while containers start and stop. Everything succeeds or fails in
one line, nothing is left behind, the store stays consistent."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers import ocirun_argv, ocirun_env, run_ocirun
from tests.runner.test_faults import _fingerprint, _session_left


def _start_all(argvs: list[list[str]]) -> list[subprocess.Popen]:
    return [subprocess.Popen(a, env=ocirun_env(), start_new_session=True, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for a in argvs]


def _finish_all(procs: list[subprocess.Popen], timeout: float = 300) -> list[tuple[int, str, str]]:
    out = []
    for p in procs:
        o, e = p.communicate(timeout=timeout)
        out.append((p.returncode, o, e))
    return out


@pytest.mark.slow
def test_50_containers_at_once_from_one_image(oc):
    image_root = Path(oc("inspect", "-f", "{{.Rootfs}}", oc.images.busybox).stdout.strip())
    before = _fingerprint(image_root)
    procs = _start_all([ocirun_argv("--root", oc.root, "run", "--rm", oc.images.busybox, "sh", "-c",
                                    f"echo {i} > /tmp/me; chown {i}:{i} /tmp/me; cat /tmp/me; stat -c %u /tmp/me")
                        for i in range(50)])
    results = _finish_all(procs)
    for i, (rc, out, err) in enumerate(results):
        assert (rc, out.split()) == (0, [str(i), str(i)]), f"container {i}: exit {rc}\n{err}"
    for p in procs:
        assert not _session_left(p.pid)
    assert run_ocirun("--root", oc.root, "ps", "-aq").stdout.strip() == ""
    assert _fingerprint(image_root) == before


@pytest.mark.slow
def test_8_concurrent_pulls_sharing_a_base_layer(registry_images, tmp_path):
    from tests.helpers.trees import HOST_BUSYBOX
    from tests.registry.regserver import ImageSpec, build_layout, busybox_layer, push

    base = busybox_layer(HOST_BUSYBOX)
    refs = []
    for i in range(8):
        layout = build_layout(tmp_path / f"layout{i}", [ImageSpec("linux/amd64", [base, {f"etc/app{i}": ("file", f"{i}\n".encode(), 0o644)}])], tag="1")
        push(layout, registry_images.registry, f"load/app{i}:1", tag="1")
        refs.append(f"{registry_images.host}/load/app{i}:1")
    root = tmp_path / "store"
    results = _finish_all(_start_all([ocirun_argv("--root", root, "pull", "-q", r) for r in refs]))
    assert all(rc == 0 for rc, _, _ in results), results
    assert len(run_ocirun("--root", root, "images", "-q").stdout.split()) == 8
    assert run_ocirun("--root", root, "system", "check").stdout.strip() == "no damage found"
    layers = [json.loads((d / "meta.json").read_text())["layers"] for d in (root / "images").iterdir()]
    assert len({ls[0] for ls in layers}) == 1  # the base blob, stored once
    assert len(list((root / "blobs" / "sha256").iterdir())) == 1 + 8 * 3  # base + (layer, config, manifest) each
    assert [p.name for p in (root / "tmp").iterdir() if p.name != "partial"] == []
    for i, r in enumerate(refs):
        cp = run_ocirun("--root", root, "run", "--rm", r, "cat", f"/etc/app{i}")
        assert cp.stdout == f"{i}\n", cp.stderr


def _names(ps_output: str) -> list[str]:
    """The NAMES column (the last) of `ps -a`."""
    return [line.split()[-1] for line in ps_output.splitlines()[1:] if line.strip()]


@pytest.mark.slow
def test_ps_and_rm_while_containers_start_and_stop(oc):
    procs = _start_all([ocirun_argv("--root", oc.root, "run", "--name", f"churn{i}", oc.images.busybox, "sh", "-c",
                                    f"sleep 0.{i % 5 + 1}") for i in range(12)])
    deadline = time.monotonic() + 60
    errors: list[str] = []
    removed: set[str] = set()
    while time.monotonic() < deadline and len(removed) < 12:
        cp = run_ocirun("--root", oc.root, "ps", "-a")
        if cp.returncode != 0 or "Traceback" in cp.stderr:
            errors.append(f"ps: {cp.stderr}")
        for name in _names(cp.stdout):
            if name.startswith("churn") and name not in removed:
                rm = run_ocirun("--root", oc.root, "rm", "-f", name)
                if "Traceback" in rm.stderr or len(rm.stderr.splitlines()) > 1:
                    errors.append(f"rm {name}: {rm.stderr}")
                if rm.returncode == 0:
                    removed.add(name)
    _finish_all(procs)
    assert not errors, errors
    for p in procs:
        assert not _session_left(p.pid)
    left = _names(run_ocirun("--root", oc.root, "ps", "-a").stdout)
    for name in left:
        run_ocirun("--root", oc.root, "rm", "-f", name)
    assert not [n for n in left if n.startswith("churn")], left
    assert not [e for e in os.listdir(oc.root / "containers") if not e.startswith(".")]
