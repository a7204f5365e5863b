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


HEREDOCS = BB + """\
ARG NAME=world
RUN <<EOF
echo "hello $NAME" > /greeting
# a comment inside the heredoc is the script's
echo second >> /greeting
EOF
RUN cat <<-EOT > /tabbed
\tindented
\tEOT
COPY <<EOF /etc/conf.txt
name=${NAME} "quoted" \\\\n
EOF
COPY <<'EOF' <<EOF2 /multi/
raw $NAME
EOF
two
EOF2
RUN <<EOF
#!/bin/sh
echo "from a script: $0" > /script-ran
EOF
"""


def test_heredocs(tmp_path: Path, ctx: Path):
    store = tmp_path / "store"
    cp = _build(store, ctx, HEREDOCS, "-t", "h:1")
    root = Store.open(store).resolve("h:1").rootfs
    got = {p: (root / p).read_text() for p in ("greeting", "tabbed", "etc/conf.txt", "multi/EOF", "multi/EOF2",
                                                "script-ran")}
    assert got == {"greeting": "hello world\nsecond\n", "tabbed": "indented\n",
                   "etc/conf.txt": 'name=world "quoted" \\\\n\n', "multi/EOF": "raw $NAME\n",
                   "multi/EOF2": "two\n", "script-ran": "from a script: /dev/pipes/EOF\n"}, cp.stdout
    assert (root / "etc/conf.txt").stat().st_mode & 0o777 == 0o644
    assert not (root / "dev/pipes").exists()
    again = _oc(store, "build", "-t", "h:1", str(ctx))
    assert again.stdout.count("CACHED") == 7, again.stdout
    (ctx / "Dockerfile").write_text(BB + "RUN <<EOF\necho never ends\n")
    assert "unterminated heredoc <<EOF" in assert_one_line_error(_oc(store, "build", str(ctx)))


MOUNTS = """\
FROM scratch AS files
COPY hello.txt /in-stage/hello.txt
""" + BB + """\
RUN --mount=type=bind,source=sub,target=/ctx cat /ctx/a > /from-bind && ! touch /ctx/new 2>/dev/null
RUN --mount=from=files,source=/in-stage,target=/st cat /st/hello.txt > /from-stage
RUN --mount=type=cache,target=/var/cache/thing sh -c 'echo run >> /var/cache/thing/log; wc -l < /var/cache/thing/log > /n'
RUN --mount=type=tmpfs,target=/scratch sh -c 'echo x > /scratch/f && test -f /scratch/f'
RUN --mount=type=secret,id=tok,required=true test "$(cat /run/secrets/tok)" = s3cret && echo ok > /secret-ok
"""


def test_run_mounts(tmp_path: Path, ctx: Path):
    store = tmp_path / "store"
    (ctx / "sub").mkdir()
    (ctx / "sub/a").write_text("from the context\n")
    secret = tmp_path / "tok"
    secret.write_text("s3cret")
    _build(store, ctx, MOUNTS, "--secret", f"id=tok,src={secret}", "-t", "m:1")
    root = Store.open(store).resolve("m:1").rootfs
    assert (root / "from-bind").read_text() == "from the context\n" and not (ctx / "sub/new").exists()
    assert (root / "from-stage").read_text() == "hello\n" and (root / "secret-ok").is_file()
    assert (root / "n").read_text().strip() == "1"
    for gone in ("var/cache/thing/log", "scratch/f", "run/secrets/tok", "ctx/a", "st/hello.txt"):
        assert not (root / gone).exists(), gone
    # the cache directory outlives the build; a changed bind source runs its step again
    (ctx / "sub/a").write_text("changed\n")
    second = _build(store, ctx, MOUNTS, "--secret", f"id=tok,src={secret}", "-t", "m:2")
    assert second.stdout.count("CACHED") == 3, second.stdout  # the stage's COPY, COPY busybox, --install
    assert (Store.open(store).resolve("m:2").rootfs / "n").read_text().strip() == "2"
    err = assert_one_line_error(_oc(store, "build", "--no-cache", str(ctx)))
    assert "secret tok is required but was not given" in err
    (ctx / "Dockerfile").write_text(BB + "RUN --mount=type=ssh true\n")
    assert "--mount type=ssh is not supported" in assert_one_line_error(_oc(store, "build", str(ctx)))



@pytest.fixture()
def http_root(tmp_path: Path):
    """A static HTTP server on 127.0.0.1 (a thread of this process)."""
    import functools
    import http.server
    import threading

    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_add_url(tmp_path: Path, ctx: Path, http_root):
    import hashlib
    import os

    www, url = http_root
    (www / "data.txt").write_text("downloaded\n")
    os.utime(www / "data.txt", (1_600_000_000, 1_600_000_000))
    good = "sha256:" + hashlib.sha256(b"downloaded\n").hexdigest()
    store = tmp_path / "store"
    dockerfile = (f"FROM scratch\nADD {url}/data.txt /dl/\nADD --checksum={good} {url}/data.txt /checked.txt\n"
                  f"ADD --chmod=0644 {url}/data.txt /dl/again.txt\n")
    _build(store, ctx, dockerfile, "-t", "u:1")
    root = Store.open(store).resolve("u:1").rootfs
    st = (root / "dl/data.txt").stat()
    assert (root / "dl/data.txt").read_text() == "downloaded\n" and st.st_mode & 0o777 == 0o600
    assert int(st.st_mtime) == 1_600_000_000  # the server's Last-Modified
    assert (root / "checked.txt").read_text() == "downloaded\n"
    assert (root / "dl/again.txt").stat().st_mode & 0o777 == 0o644
    again = _oc(store, "build", "-t", "u:1", str(ctx))
    assert again.stdout.count("CACHED") == 3, again.stdout  # fetched again, the same bytes
    (www / "data.txt").write_text("new content\n")
    assert "checksum mismatch" in assert_one_line_error(_oc(store, "build", "-t", "u:1", str(ctx)))
    (ctx / "Dockerfile").write_text(f"FROM scratch\nADD {url}/missing.txt /x\n")
    assert "missing.txt: 404" in assert_one_line_error(_oc(store, "build", str(ctx)))
    (ctx / "Dockerfile").write_text(f"FROM scratch\nCOPY {url}/data.txt /x\n")
    assert "source can't be a URL for COPY" in assert_one_line_error(_oc(store, "build", str(ctx)))
