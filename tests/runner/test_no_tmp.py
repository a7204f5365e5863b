"""A host without a usable /tmp, as Android (Termux) is: the store under XDG_DATA_HOME,
temporary files under TMPDIR, and nothing written to /tmp. /tmp is covered read-only in
a private mount namespace (tests/helpers/notmp.py; as a user inside a user namespace
mapping the user to itself), so anything that still needed it would fail."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.helpers import ocirun_argv, ocirun_env
from tests.helpers.notmp import without_tmp

SCRIPT = r"""
set -e
touch /tmp/probe 2>/dev/null && echo "/tmp is writable: not a valid test" || echo "no /tmp"
$OC pull -q "$IMAGE" > /dev/null
$OC run --rm "$IMAGE" sh -c 'echo in-container > /tmp/f && cat /tmp/f'
printf 'FROM %s\nRUN echo built > /built\n' "$IMAGE" > "$APP/Dockerfile"
$OC build -q -t notmp:1 "$APP" > /dev/null
$OC run --rm notmp:1 cat /built
$OC proot -r "$ROOTFS" -b /proc -k 5.4.0-notmp -b "$APP:/nonexistent/app" sh -c 'uname -r; ls -d /nonexistent/app'
OCIRUN_SYSVIPC=1 $OC proot -r "$ROOTFS" -b /proc -b /dev sh -c 'ipcmk -M 4096 -S 2 > /dev/null && echo sysvipc'
$OC proot -0 -r "$ROOTFS" id -u
ls -A "$XDG_DATA_HOME"
echo done
"""


def test_nothing_needs_tmp(tmp_path: Path, registry_images, debian_rootfs: Path) -> None:
    app = tmp_path / "app"  # the app's own data, as Termux's $PREFIX/$HOME
    (app / "tmp").mkdir(parents=True)
    env = ocirun_env({
        "APP": str(app),
        "HOME": str(app),
        "TMPDIR": str(app / "tmp"),
        "XDG_DATA_HOME": str(app / "data"),
        "OCIRUN": "",
        "OC": " ".join(ocirun_argv()),
        "IMAGE": registry_images.busybox,
        "ROOTFS": str(debian_rootfs),
    })
    env.pop("OCIRUN_ROOT", None)
    cp = subprocess.run(without_tmp(tmp_path, ["bash", "-c", SCRIPT]), env=env, capture_output=True,
                        text=True, timeout=600, stdin=subprocess.DEVNULL, cwd="/")
    assert cp.returncode == 0, f"stdout: {cp.stdout}\nstderr: {cp.stderr}"
    assert cp.stdout.splitlines() == ["no /tmp", "in-container", "built", "5.4.0-notmp", "/nonexistent/app",
                                      "sysvipc", "0", "ocirun", "done"], cp.stderr
    assert list((app / "tmp").iterdir()) == []  # what was made there is gone
