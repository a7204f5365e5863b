"""`ocirun build` features beyond the classic builder's steps, on FROM scratch + the host's
static busybox (fast, no network): ONBUILD triggers, stage pruning for --target,
heredocs, RUN --mount, ADD of a URL (from a server on 127.0.0.1)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from layers.store import Store
from tests.helpers import assert_one_line_error, run_ocirun
from tests.helpers.trees import HOST_BUSYBOX


@pytest.fixture()
def ctx(tmp_path: Path) -> Path:
    c = tmp_path / "ctx"
    c.mkdir()
    shutil.copy(HOST_BUSYBOX, c / "busybox")
    (c / "hello.txt").write_text("hello\n")
    return c


def _oc(store: Path, *args: str, **kw):
    return run_ocirun("--root", str(store), *args, timeout=kw.pop("timeout", 300), **kw)


def _build(store: Path, ctx: Path, dockerfile: str, *args: str):
    (ctx / "Dockerfile").write_text(dockerfile)
    cp = _oc(store, "build", *args, str(ctx))
    assert cp.returncode == 0, cp.stdout + cp.stderr
    return cp


BB = "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n"


def test_onbuild_triggers_run_after_from_and_are_not_inherited(tmp_path: Path, ctx: Path):
    store = tmp_path / "store"
    _build(store, ctx, BB + "ONBUILD RUN echo triggered > /trig\nONBUILD COPY hello.txt /from-trigger.txt\n",
           "-t", "parent:1")
    assert Store.open(store).resolve("parent:1").config["config"]["OnBuild"] == [
        "RUN echo triggered > /trig", "COPY hello.txt /from-trigger.txt"]
    child = _build(store, ctx, "FROM parent:1\nRUN cat /trig /from-trigger.txt > /both\n", "-t", "child:1")
    assert "# Executing 2 build triggers" in child.stdout and "Step 4/4 : RUN cat" in child.stdout, child.stdout
    rec = Store.open(store).resolve("child:1")
    assert (rec.rootfs / "both").read_text() == "triggered\nhello\n"
    assert "OnBuild" not in rec.config["config"]
    grand = _build(store, ctx, "FROM child:1\nRUN ls /\n", "-t", "grand:1")
    assert "build trigger" not in grand.stdout
    # a stage with ONBUILD triggers them in a stage built FROM it, not in itself
    multi = _build(store, ctx, BB.replace("FROM scratch", "FROM scratch AS p") + "ONBUILD RUN echo stage > /stage\n"
                   "RUN test ! -e /stage\n"
                   "FROM p\nRUN cat /stage\n", "-t", "multi:1")
    assert "# Executing 1 build trigger" in multi.stdout and "\nstage\n" in multi.stdout, multi.stdout
    (ctx / "Dockerfile").write_text("FROM parent:1\nONBUILD FROM scratch\n")
    err = assert_one_line_error(_oc(store, "build", str(ctx)))
    assert "FROM isn't allowed as an ONBUILD trigger" in err


def test_target_builds_only_the_stages_it_needs(tmp_path: Path, ctx: Path):
    store = tmp_path / "store"
    dockerfile = (
        "ARG UNUSED=x\n"
        "FROM scratch AS broken\nCOPY missing.txt /x\n"  # fails if it is ever built
        "FROM scratch AS dep\nCOPY hello.txt /dep.txt\n"
        + BB.replace("FROM scratch", "FROM scratch AS base") +
        "FROM base AS target\nCOPY --from=dep /dep.txt /copied.txt\nRUN cat /copied.txt\n"
        "FROM scratch AS last\nCOPY --from=1 /dep.txt /only.txt\n"
    )
    cp = _build(store, ctx, dockerfile, "--target", "target", "-t", "t:1")
    assert "Step 1/9 : ARG UNUSED=x" in cp.stdout and "missing.txt" not in cp.stdout, cp.stdout
    assert (Store.open(store).resolve("t:1").rootfs / "copied.txt").read_text() == "hello\n"
    # without --target the last stage is the target: only `dep` (index 1) is built for it
    last = _build(store, ctx, dockerfile, "-t", "l:1")
    assert "Step 5/5 : COPY --from=1" in last.stdout and "FROM scratch AS base" not in last.stdout, last.stdout
    (ctx / "Dockerfile").write_text(dockerfile)
    err = assert_one_line_error(_oc(store, "build", "--target", "broken", str(ctx)))
    assert "missing.txt: no such file or directory" in err
