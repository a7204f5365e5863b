"""The store on a filesystem that refuses user xattrs (ramfs here; tmpfs < 6.6, NFS, Lustre...).

Containers stay lazy there (placeholders keep their mark in a file), the guest never sees
the mark, and copy-up still leaves the image alone. Runs as root and as a user (a user
namespace mapping the user to itself mounts the ramfs; the commands run unprivileged).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from ocirun.engine.lazymarks import MARK_FILE
from tests.helpers import ocirun_argv, ocirun_env
from tests.helpers.ramfs import in_ramfs, takes_user_xattrs

SCRIPT = r"""
set -e
OC="$OCIRUN --root $STORE"
mkdir -p "$STORE"
python3 -c "import os; os.setxattr('$STORE', 'user.probe', b'1')" 2>&1 | tail -1
$OC pull -q "$IMAGE" > /dev/null
cid=$($OC create --name lazy "$IMAGE" true)
rootfs=$STORE/containers/$cid/rootfs
echo "placeholder: $(ls -A "$rootfs/usr")"
$OC container inspect lazy > "$STORE/inspect.json"
$OC start -a lazy
echo "after start: $(ls -A "$rootfs/usr" | tr '\n' ' ')"
$OC run --rm "$IMAGE" sh -c 'ls -A /usr /etc /usr/share | grep -c ocirun-lazy || true'
$OC run --name writer "$IMAGE" sh -c 'echo changed >> /etc/passwd; mkdir /usr/new; echo ok'
$OC exec writer sh -c 'tail -1 /etc/passwd; ls -d /usr/new'
img=$(python3 -c "import json; print(json.load(open('$STORE/inspect.json'))[0]['ImageRoot'])")
tail -1 "$img/etc/passwd"
$OC rm -f writer lazy > /dev/null
echo done
"""


def test_store_without_user_xattrs(tmp_path, registry_images) -> None:
    mount = tmp_path / "ramfs"
    env = ocirun_env({
        "STORE": str(mount / "store"),
        "IMAGE": registry_images.debian,
        "OCIRUN": " ".join(ocirun_argv()),
    })
    cp = subprocess.run(in_ramfs(mount, ["bash", "-c", SCRIPT]), env=env, capture_output=True,
                        text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert cp.returncode == 0, f"stdout: {cp.stdout}\nstderr: {cp.stderr}"
    lines = cp.stdout.splitlines()
    assert "Operation not supported" in lines[0], "the ramfs took a user xattr: not a valid test"
    assert lines[1] == f"placeholder: {MARK_FILE}"  # created lazily: /usr not filled yet
    assert lines[2].startswith("after start: ") and MARK_FILE not in lines[2]
    assert "bin" in lines[2].split()
    assert lines[3] == "0"  # the guest never sees a mark
    assert lines[4:7] == ["ok", "changed", "/usr/new"]
    assert lines[7] != "changed"  # the image's /etc/passwd is untouched
    assert lines[8] == "done"


def test_marks_follow_the_filesystem(tmp_path) -> None:
    """The same tree code picks xattrs where the filesystem has them, mark files where not."""
    image = tmp_path / "image"
    (image / "usr" / "lib").mkdir(parents=True)
    (image / "usr" / "lib" / "f").write_text("x")
    probe = (
        "import json, os, sys\n"
        "from ocirun.engine import cow\n"
        "t = cow.ContainerTree(sys.argv[1], sys.argv[2] + '/rootfs'); t.create()\n"
        "usr = t.root + '/usr'\n"
        "before = (type(t.marks).__name__, sorted(os.listdir(usr)), t.is_lazy(usr))\n"
        "t.ensure(usr)\n"
        "print(json.dumps([before, sorted(os.listdir(usr)), t.is_lazy(usr)]))\n"
    )
    plain = tmp_path / "plain"
    plain.mkdir()
    ramfs = tmp_path / "ramfs"
    results = []
    for argv in ([str(plain)], None):
        cmd = [sys.executable, "-c", probe, str(image), str(argv[0] if argv else ramfs)]
        if argv is None:
            cmd = in_ramfs(ramfs, cmd)
        cp = subprocess.run(cmd, env=ocirun_env(), capture_output=True, text=True, timeout=60)
        assert cp.returncode == 0, cp.stderr
        results.append(json.loads(cp.stdout))
    has_xattrs = takes_user_xattrs(plain)
    assert results[0] == [["XattrMarks" if has_xattrs else "FileMarks", [] if has_xattrs else [MARK_FILE], True],
                          ["lib"], False]
    assert results[1] == [["FileMarks", [MARK_FILE], True], ["lib"], False]


def test_container_trees_without_user_xattrs(tmp_path) -> None:
    """tests/runner/test_cow.py again, every tree of it (image and container) on a
    ramfs: laziness, materialisation, renamed placeholders, concurrent lookups,
    copy-up and removal with the marks in files."""
    mount = tmp_path / "ramfs"
    argv = [sys.executable, "-m", "pytest", "-q",
            "--basetemp", str(mount / "tmp"), "tests/runner/test_cow.py"]
    cp = subprocess.run(in_ramfs(mount, argv), env=ocirun_env(), capture_output=True, text=True,
                        timeout=300, stdin=subprocess.DEVNULL, cwd=Path(__file__).resolve().parents[2])
    assert cp.returncode == 0, f"stdout: {cp.stdout}\nstderr: {cp.stderr}"
    assert " passed" in cp.stdout.splitlines()[-1] and "skipped" not in cp.stdout
