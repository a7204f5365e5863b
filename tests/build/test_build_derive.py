"""The tree a RUN step leaves (made from the step's container, ocirun.build.derive) is the
tree its layer unpacks to, file by file; layers are the same bytes with any number of
compression threads."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import stat
from pathlib import Path

import pytest

from layers.pgzip import ParallelGzip
from layers.store import Store
from layers.unpack import LayerSpec, unpack_layers
from tests.helpers import run_ocirun
from tests.helpers.trees import HOST_BUSYBOX

DOCKERFILE = """\
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
RUN mkdir -p /a/b /gone/deep /keep && echo x > /a/b/f && echo y > /gone/deep/f && ln /a/b/f /a/hard \\
 && ln -s b/f /a/sym && mkdir /owned && chown 12:34 /owned && echo s > /suid && chmod 4755 /suid \\
 && chmod 0600 /a/b/f && touch -d @1000 /a/old && echo k > /keep/k && mkfifo /fifo && chmod 0555 /keep
RUN rm -rf /gone /a/sym && echo changed >> /a/b/f && mkdir /replaced && rm -rf /replaced \\
 && echo r > /replaced && chmod 0000 /a/old && chown 5:6 /a/old && chmod 0750 /owned && rm /keep/k
"""


def _snapshot(root: Path) -> tuple[dict[str, tuple], list[list[str]]]:
    """Every path's type, mode, owner, mtime and content; the hardlink groups inside the tree
    (link counts differ: a stored tree shares inodes with the trees below it)."""
    out, inodes = {}, {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            p = Path(dirpath) / name
            st = os.lstat(p)
            rel = str(p.relative_to(root))
            data = None
            if stat.S_ISREG(st.st_mode):
                inodes.setdefault(st.st_ino, []).append(rel)
                if not st.st_mode & 0o400:
                    os.chmod(p, st.st_mode | 0o400)  # a 0000 file, as a user (restored below)
                data = p.read_bytes()
                os.chmod(p, stat.S_IMODE(st.st_mode))
            elif stat.S_ISLNK(st.st_mode):
                data = os.readlink(p)
            out[rel] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
                        None if stat.S_ISLNK(st.st_mode) else st.st_mtime_ns, data)
    return out, sorted(sorted(g) for g in inodes.values() if len(g) > 1)


@pytest.mark.parametrize("epoch", [None, "1700000000"])
def test_the_derived_tree_is_the_unpacked_layer(tmp_path: Path, epoch: str | None):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    shutil.copy(HOST_BUSYBOX, ctx / "busybox")
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    store = tmp_path / "store"
    env = {"SOURCE_DATE_EPOCH": epoch} if epoch else {}
    cp = run_ocirun("--root", str(store), "build", "-t", "d:1", str(ctx), env=env, timeout=300)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    s = Store.open(store)
    rec = s.resolve("d:1")
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    unpack_layers(s.blobs, [LayerSpec(d) for d in rec.layers], fresh / "rootfs", fresh / "ownership")
    derived, unpacked = _snapshot(rec.rootfs), _snapshot(fresh / "rootfs")
    assert "a/old" in derived[0] and "gone" not in derived[0] and "keep/k" not in derived[0]
    assert derived == unpacked
    owners = json.loads(rec.ownership_path.read_text()) if rec.ownership_path.exists() else {"entries": {}}
    assert owners == json.loads((fresh / "ownership").read_text())
    ls = run_ocirun("--root", str(store), "run", "--rm", "d:1", "ls", "-lnd", "/a/old", "/owned", "/suid",
                    timeout=120)
    seen = {f.split()[-1]: f"{f.split()[0]} {f.split()[2]}:{f.split()[3]}" for f in ls.stdout.splitlines()}
    assert seen == {"/a/old": "---------- 5:6", "/owned": "drwxr-x--- 12:34", "/suid": "-rwsr-xr-x 0:0"}, ls.stderr

def test_parallel_gzip_is_the_same_bytes_on_any_number_of_threads():
    data = os.urandom(300_000) + b"text " * 400_000 + bytes(1 << 20)
    outs = set()
    for threads in (1, 2, 4):
        c = ParallelGzip(1, threads)
        parts = [c.compress(data[i : i + 70_000]) for i in range(0, len(data), 70_000)]
        blob = b"".join(parts) + c.flush()
        assert gzip.decompress(blob) == data
        outs.add(blob)
    assert len(outs) == 1
    for small in (b"", b"x"):
        c = ParallelGzip(6, 2)
        assert gzip.decompress(c.compress(small) + c.flush()) == small
