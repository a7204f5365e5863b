"""`ocirun build` on FROM scratch + the host's static busybox: steps, cache, config,
reproducible digests, errors. Fast: no registry, no network."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from layers.store import Store
from tests.build.ocilayout import write_layout
from tests.helpers import assert_one_line_error, run_ocirun
from tests.helpers.trees import HOST_BUSYBOX

DOCKERFILE = """\
# a small image
FROM scratch
ARG WHO=world
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
ENV GREETING="hello ${WHO}" \\
    MORE=x
COPY --chown=1234:55 --chmod=0640 hello.txt sub /data/
ADD files.tar /unpacked/
RUN stat -c 'owner %u:%g %n' /unpacked/t/member.txt /data/a
WORKDIR /data
RUN echo "$GREETING" > greet && mkdir owned && chown 77:88 owned greet && rm hello.txt
USER 77
EXPOSE 8080 53/udp
LABEL org.example.name="small one" version=1
VOLUME /data/owned
STOPSIGNAL SIGINT
HEALTHCHECK --interval=5s --retries=2 CMD cat /data/greet
ONBUILD RUN echo triggered
ENTRYPOINT ["cat"]
CMD ["/data/greet"]
"""


@pytest.fixture()
def ctx(tmp_path: Path) -> Path:
    c = tmp_path / "ctx"
    (c / "sub").mkdir(parents=True)
    shutil.copy(HOST_BUSYBOX, c / "busybox")
    (c / "hello.txt").write_text("hello\n")
    (c / "sub/a").write_text("a\n")
    (c / "ignored.log").write_text("x")
    (c / ".dockerignore").write_text("*.log\n")
    member = c / "member.txt"
    member.write_text("from a tar\n")
    with tarfile.open(c / "files.tar", "w") as tf:
        info = tf.gettarinfo(member, "t/member.txt")
        info.uid, info.gid = 4242, 4343
        with open(member, "rb") as f:
            tf.addfile(info, f)
    member.unlink()
    (c / "Dockerfile").write_text(DOCKERFILE)
    return c


def _oc(store: Path, *args, **kw):
    return run_ocirun(*args, env={"OCIRUN_ROOT": str(store), **kw.pop("env", {})}, timeout=300, **kw)


def test_build_run_and_inspect(tmp_path: Path, ctx: Path):
    store = tmp_path / "store"
    cp = _oc(store, "build", "-t", "small:1", "-t", "example.com/small", str(ctx))
    assert cp.returncode == 0, cp.stdout + cp.stderr
    lines = cp.stdout.splitlines()
    # what a RUN sees of earlier steps' owners (also as a user: the fake root is seeded)
    assert "owner 4242:4343 /unpacked/t/member.txt" in lines and "owner 1234:55 /data/a" in lines, cp.stdout
    assert lines[0] == "Step 1/19 : FROM scratch" and "Step 19/19 : CMD [\"/data/greet\"]" in lines
    assert lines[-2:] == ["Successfully tagged small:1", "Successfully tagged example.com/small:latest"]
    run = _oc(store, "run", "--rm", "small:1")
    assert (run.returncode, run.stdout) == (0, "hello world\n"), run.stderr
    rec = Store.open(store).resolve("small:1")
    cfg = rec.config["config"]
    assert cfg["Env"] == ["GREETING=hello world", "MORE=x"] and cfg["User"] == "77"
    assert cfg["WorkingDir"] == "/data" and cfg["Entrypoint"] == ["cat"] and cfg["Cmd"] == ["/data/greet"]
    assert cfg["ExposedPorts"] == {"8080/tcp": {}, "53/udp": {}}
    assert cfg["Labels"] == {"org.example.name": "small one", "version": "1"}
    assert cfg["Volumes"] == {"/data/owned": {}} and cfg["StopSignal"] == "SIGINT"
    assert cfg["Healthcheck"] == {"Test": ["CMD-SHELL", "cat /data/greet"], "Interval": 5_000_000_000, "Retries": 2}
    assert cfg["OnBuild"] == ["RUN echo triggered"]
    assert len(rec.config["rootfs"]["diff_ids"]) == 6 and len(rec.config["history"]) == 17
    ls = _oc(store, "run", "--rm", "--entrypoint", "ls", "small:1", "-lnd", "/data/owned", "/data/greet",
             "/data/a", "/unpacked/t/member.txt")
    owners = {line.split()[-1]: line.split()[0] + " " + line.split()[2] + ":" + line.split()[3]
              for line in ls.stdout.splitlines()}
    assert owners == {"/data/owned": "drwxr-xr-x 77:88", "/data/greet": "-rw-r--r-- 77:88",
                      "/data/a": "-rw-r----- 1234:55", "/unpacked/t/member.txt": "-rw-r--r-- 4242:4343"}, ls.stdout
    assert _oc(store, "run", "--rm", "--entrypoint", "ls", "small:1", "/data/hello.txt").returncode != 0
    assert "ignored.log" not in json.dumps(rec.config)


def test_cached_rebuild_and_changed_context(tmp_path: Path, ctx: Path):
    store = tmp_path / "store"
    first = _oc(store, "build", "-q", "-t", "small:1", str(ctx))
    assert first.returncode == 0, first.stderr
    start = time.monotonic()
    again = _oc(store, "build", "-t", "small:1", str(ctx))
    took = time.monotonic() - start
    assert again.returncode == 0 and again.stdout.count(" ---> CACHED") == 17, again.stdout
    assert again.stdout.splitlines()[-2] == f"Successfully built {first.stdout.strip()[7:19]}"
    assert took < 4, f"a cached rebuild took {took:.1f}s"
    (ctx / "sub/a").write_text("changed\n")
    third = _oc(store, "build", "-t", "small:1", str(ctx))
    assert third.stdout.count(" ---> CACHED") == 3, third.stdout  # up to the COPY that reads sub/
    rows = _oc(store, "images").stdout.splitlines()[1:]
    # small:1 and the image it named before (dangling, as docker's): build steps stay hidden
    assert [r.split()[:2] for r in rows] == [["small", "1"], ["<none>", "<none>"]], rows
    # an untagged build is listed (as <none>), even when it is a step's tree itself
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY hello.txt /\n")
    untagged = _oc(store, "build", "-q", str(ctx)).stdout.strip()
    rows = _oc(store, "images", "--no-trunc").stdout
    assert untagged in rows and "<none>" in rows, rows


def test_source_date_epoch_gives_the_same_digests(tmp_path: Path, ctx: Path):
    ids = []
    for n in range(2):
        cp = _oc(tmp_path / f"store{n}", "build", "-q", "--no-cache", str(ctx), env={"SOURCE_DATE_EPOCH": "1700000000"})
        assert cp.returncode == 0, cp.stderr
        ids.append(cp.stdout.strip())
        os.utime(ctx / "hello.txt", (1.8e9 + n, 1.8e9 + n))  # an mtime after the epoch is clamped
    assert ids[0] == ids[1]
    rec = Store.open(tmp_path / "store0").get(ids[0])
    assert rec.config["created"] == "2023-11-14T22:13:20Z"
    man = json.loads(Store.open(tmp_path / "store0").blobs.read_bytes(rec.manifest_digest))
    assert Store.open(tmp_path / "store1").get(ids[1]).manifest_digest == rec.manifest_digest
    assert man["mediaType"] == "application/vnd.oci.image.manifest.v1+json"


def test_zstd_and_docker_format_read_by_skopeo(tmp_path: Path, ctx: Path):
    store = tmp_path / "store"
    assert _oc(store, "build", "-q", "--format", "docker", "-t", "d:1", str(ctx)).returncode == 0
    assert _oc(store, "build", "-q", "--compression", "zstd", "-t", "z:1", str(ctx)).returncode == 0
    s = Store.open(store)
    dman = json.loads(s.blobs.read_bytes(s.resolve("d:1").manifest_digest))
    assert dman["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert {d["mediaType"] for d in dman["layers"]} == {"application/vnd.docker.image.rootfs.diff.tar.gzip"}
    layout = write_layout(s, "z:1", tmp_path / "layout", "z")
    out = subprocess.run(["skopeo", "inspect", f"oci:{layout}:z"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["Env"] == ["GREETING=hello world", "MORE=x"] and doc["Labels"]["version"] == "1"
    raw = json.loads(subprocess.run(["skopeo", "inspect", "--raw", f"oci:{layout}:z"],
                                    capture_output=True, text=True, check=True).stdout)
    assert raw["layers"][-1]["mediaType"] == "application/vnd.oci.image.layer.v1.tar+zstd"
    cfg = json.loads(subprocess.run(["skopeo", "inspect", "--config", f"oci:{layout}:z"],
                                    capture_output=True, text=True, check=True).stdout)
    assert cfg["config"]["User"] == "77" and cfg["config"]["Cmd"] == ["/data/greet"]


def test_failing_run_is_exit_1_and_tags_nothing(tmp_path: Path, ctx: Path):
    store = tmp_path / "store"
    (ctx / "Dockerfile").write_text(DOCKERFILE.replace("USER 77", "RUN echo output of the step; exit 3"))
    cp = _oc(store, "build", "-t", "broken:1", str(ctx))
    assert cp.returncode == 1 and "output of the step" in cp.stdout
    assert cp.stderr.strip() == (
        "ocirun: The command '/bin/sh -c echo output of the step; exit 3' returned a non-zero code: 3")
    assert Store.open(store).resolve("broken:1") is None
    assert not [n for n in os.listdir(store / "containers") if not n.startswith(".")]  # the container is gone
    leftovers = [n for n in os.listdir(store / "tmp") if n != "partial"]
    assert leftovers == []


def test_copy_relative_to_workdir(tmp_path: Path, ctx: Path):
    store = tmp_path / "store"
    (ctx / "Dockerfile").write_text("FROM scratch\nWORKDIR /app\nCOPY . .\nCOPY hello.txt ../top.txt\n"
                                    "WORKDIR sub\nCOPY sub/a ./\nCOPY sub/* /\n")
    cp = _oc(store, "build", "-q", "-t", "wd:1", str(ctx))
    assert cp.returncode == 0, cp.stderr
    root = Store.open(store).resolve("wd:1").rootfs
    assert (root / "app/hello.txt").read_text() == "hello\n" and (root / "app/sub/a").is_file()
    assert not (root / "app/ignored.log").exists() and (root / "top.txt").is_file()
    assert (root / "app/sub/a").read_text() == "a\n" and (root / "a").is_file()
    assert Store.open(store).resolve("wd:1").config["config"]["WorkingDir"] == "/app/sub"


def test_errors_are_one_line(tmp_path: Path, ctx: Path):
    store = tmp_path / "store"
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY missing.txt /x\n")
    err = assert_one_line_error(_oc(store, "build", str(ctx)))
    assert "missing.txt: no such file or directory" in err
    (ctx / "Dockerfile").write_text("FROM scratch\n\nCOPY ignored.log /x\n")
    assert "(or excluded by .dockerignore)" in assert_one_line_error(_oc(store, "build", str(ctx)))
    (ctx / "Dockerfile").write_text("FROM scratch\nRUNN true\n")
    assert assert_one_line_error(_oc(store, "build", str(ctx))) == "ocirun: Dockerfile:2: unknown instruction: RUNN"
    assert "not found" in assert_one_line_error(_oc(store, "build", str(tmp_path / "nowhere")), 125)
    assert "invalid argument" in assert_one_line_error(_oc(store, "build", "-t", "Bad:Tag:x", str(ctx)), 125)
