"""The compiled fast path (ocirun/engine/_fastpath.c): it takes the common stops, and
what it answers from its mirror of the path cache follows the guest's own mutations
exactly as the pure-Python loop does."""

from __future__ import annotations

import importlib.util
import re
import subprocess
from pathlib import Path

import pytest

from tests.helpers import ocirun_argv, ocirun_env

# stat the same paths many times (cache hits), then rename, symlink, remove and
# re-create what they name: every answer must be the one of the current tree
SCRIPT = """
mkdir -p /w/a && echo x > /w/a/f
for i in 1 2 3 4 5 6 7 8; do stat -c %s /w/a/f; done
mv /w/a /w/b; stat /w/a/f 2>/dev/null || echo gone
ln -s /w/b /w/a; stat -L -c %s /w/a/f; stat -c %F /w/a  # absolute: only the guest resolves it
rm /w/a; mkdir /w/a; echo yyy > /w/a/f; stat -c %s /w/a/f; stat -c %F /w/a
rm -r /w/a /w/b
"""
EXPECTED = ["2"] * 8 + ["gone", "2", "symbolic link", "4", "directory"]
STATS = re.compile(r"fast path: (\d+) of (\d+) seccomp stops")


def _run(root: Path, no_fastpath: str) -> subprocess.CompletedProcess:
    env = ocirun_env({"OCIRUN_NO_FASTPATH": no_fastpath, "OCIRUN_FASTPATH_STATS": "1", "OCIRUN_NO_SECCOMP": "0"})
    return subprocess.run(ocirun_argv("proot", "-r", root, "sh", "-c", SCRIPT), env=env,
                          capture_output=True, text=True, timeout=120)


def test_fast_path_built() -> None:
    assert importlib.util.find_spec("ocirun.engine._fastpath"), \
        "the C extension is not built: python setup.py build_ext --inplace (gcc, python3-dev)"


@pytest.mark.parametrize("no_fastpath", ["0", "1"])
def test_mutations_seen_with_and_without_fast_path(bb_rw: Path, no_fastpath: str) -> None:
    p = _run(bb_rw, no_fastpath)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split("\n")[:-1] == EXPECTED
    stats = STATS.search(p.stderr)
    if no_fastpath == "1":
        assert stats is None, p.stderr
    else:
        assert stats, p.stderr
        fast, seen = int(stats[1]), int(stats[2])
        assert 8 <= fast < seen, p.stderr  # the 8 warm stats at least; mkdir, mv... go to Python
