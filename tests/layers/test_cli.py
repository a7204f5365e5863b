"""Image commands through the real CLI (subprocesses): output shapes and one-line errors."""

from __future__ import annotations

import json
import os

import pytest

from layers.store import Store
from tests.helpers import assert_one_line_error, run_ocirun
from tests.layers.tarbuild import make_pulled
from tests.registry.regserver import build_layout, busybox_images, push, start_registry

BASE = [[("dir", "etc"), ("file", "etc/os-release", "ID=test\n")]]


@pytest.fixture
def populated(tmp_path):
    store = Store.open(tmp_path / "root")
    rec = store.install(make_pulled(store.blobs, BASE, name="docker.io/library/alpha", tag="1"))
    return store, rec


def test_images_inspect_rmi(populated):
    store, rec = populated
    root = str(store.root)
    cp = run_ocirun("--root", root, "images")
    assert cp.returncode == 0, cp.stderr
    head, row = cp.stdout.splitlines()
    assert head.split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "PLATFORM", "CREATED", "SIZE"]
    assert row.split()[:4] == ["alpha", "1", rec.short_id, "linux/amd64"]
    assert run_ocirun("--root", root, "images", "-q").stdout.split() == [rec.short_id]
    for flt, n in (("alpha", 1), ("alpha:1", 1), ("docker.io/library/alpha", 1), ("alpha:2", 0), ("beta", 0)):
        assert len(run_ocirun("--root", root, "images", "-q", flt).stdout.split()) == n, flt
    assert rec.manifest_digest in run_ocirun("--root", root, "images", "--digests").stdout

    cp = run_ocirun("--root", root, "inspect", "alpha:1")
    assert cp.returncode == 0, cp.stderr
    (doc,) = json.loads(cp.stdout)
    assert doc["Id"] == rec.id and doc["RepoTags"] == ["alpha:1"]
    assert doc["Rootfs"] == str(rec.rootfs) and os.path.isabs(doc["Rootfs"])
    assert doc["Architecture"] == "amd64" and doc["Os"] == "linux"
    assert doc["RootFS"]["Layers"] == rec.config["rootfs"]["diff_ids"]
    assert doc["Config"]["Cmd"] == ["/bin/sh"]
    assert run_ocirun("--root", root, "inspect", "-f", "{{.Rootfs}}", rec.short_id).stdout.strip() == str(rec.rootfs)

    cp = run_ocirun("--root", root, "image", "ls")
    assert "alpha" in cp.stdout
    cp = run_ocirun("--root", root, "rmi", "alpha:1")
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout.splitlines() == ["Untagged: alpha:1", f"Deleted: {rec.id}"]
    assert run_ocirun("--root", root, "images", "-q").stdout == ""


def test_rmi_refuses_while_a_container_uses_it(populated):
    store, rec = populated
    cdir = store.root / "containers" / ("c" * 64)
    cdir.mkdir(parents=True)
    (cdir / "config.json").write_text(json.dumps({"ImageID": rec.id}))
    cp = run_ocirun("--root", str(store.root), "rmi", "alpha:1")
    line = assert_one_line_error(cp, 125)
    assert "container cccccccccccc is using" in line
    cp = run_ocirun("--root", str(store.root), "rmi", "-f", "alpha:1")
    assert cp.returncode == 0 and f"Deleted: {rec.id}" in cp.stdout


@pytest.mark.parametrize(
    "args, words",
    [
        (["rmi", "nosuch"], "No such image: nosuch"),
        (["inspect", "nosuch"], "No such image: nosuch"),
        (["pull", "INVALID//ref"], "invalid reference"),
        (["pull", "--platform", "a/b/c/d", "busybox"], "invalid platform"),
        (["load", "-i", "/nonexistent/file.tar"], "/nonexistent/file.tar"),
        (["pull", "127.0.0.1:9/none/such:1"], "127.0.0.1:9"),
    ],
)
def test_one_line_errors(tmp_path, args, words):
    cp = run_ocirun("--root", str(tmp_path), *args)
    line = assert_one_line_error(cp, 125)
    assert words in line


def test_system_df_and_image_prune(populated):
    store, rec = populated
    root = str(store.root)
    cp = run_ocirun("--root", root, "system", "df")
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout.split("\n")[1].split()[:3] == ["Images", "1", "0"]
    stale = store.tmp_dir / f"unpack-{'e' * 64}-x"
    (stale / "rootfs").mkdir(parents=True)
    cp = run_ocirun("--root", root, "image", "prune", "-f")
    assert cp.returncode == 0, cp.stderr
    assert "Total reclaimed space" in cp.stdout and not stale.exists()
    assert store.resolve("alpha:1") is not None  # tagged: kept
    cp = run_ocirun("--root", root, "image", "prune", "-a", "-f")
    assert f"deleted: {rec.id}" in cp.stdout


def test_root_from_environment(populated):
    store, rec = populated
    cp = run_ocirun("images", "-q", env={"OCIRUN_ROOT": str(store.root)})
    assert cp.stdout.split() == [rec.short_id]


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli-registry")
    reg = start_registry(tmp / "reg")
    push(build_layout(tmp / "layout", busybox_images(), tag="1"), reg, "library/busybox:1")
    yield reg
    reg.stop()


def test_pull_images_inspect_via_cli(registry, tmp_path):
    root = str(tmp_path / "root")
    ref = f"{registry.host}/library/busybox:1"
    cp = run_ocirun("--root", root, "pull", "--platform", "linux/arm64", ref)
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout.splitlines()[-1] == ref
    assert "Downloaded newer image" in cp.stdout
    cp = run_ocirun("--root", root, "pull", "-q", ref)
    assert cp.returncode == 0 and cp.stdout.strip() == ref
    cp = run_ocirun("--root", root, "images")
    platforms = sorted(line.split()[3] for line in cp.stdout.splitlines()[1:])
    assert platforms == ["linux/amd64", "linux/arm64/v8"]
    cp = run_ocirun("--root", root, "inspect", "--platform", "linux/arm64", ref)
    (doc,) = json.loads(cp.stdout)
    assert doc["Architecture"] == "arm64" and doc["Variant"] == "v8"
    assert (open(os.path.join(doc["Rootfs"], "etc/hostname")).read()) == "arm64\n"
    cp = run_ocirun("--root", root, "pull", ref)
    assert "Image is up to date" in cp.stdout


def _push_crafted(registry, tmp_path, name: str, layers: list[list[tuple]]) -> str:
    from tests.layers.tarbuild import compress, make_tar, write_oci_layout

    layout = tmp_path / f"layout-{name.replace('/', '-')}"
    write_oci_layout(layout, [compress(make_tar(entries), "gzip") for entries in layers], tag="1")
    push(layout, registry, f"{name}:1")
    return f"{registry.host}/{name}:1"


def test_hostile_pull_one_line_error_and_store_unchanged(registry, tmp_path):
    root = tmp_path / "root"
    good = f"{registry.host}/library/busybox:1"
    assert run_ocirun("--root", root, "pull", "-q", good).returncode == 0
    before = sorted(str(p.relative_to(root)) for p in root.rglob("*") if "locks" not in p.parts)
    evil = _push_crafted(
        registry, tmp_path, "library/evil",
        [[("symlink", "etc", "/etc")], [("file", "etc/ocirun-pwned", "x")]],
    )
    cp = run_ocirun("--root", root, "pull", evil)
    line = assert_one_line_error(cp, 125)
    assert "etc/ocirun-pwned" in line
    assert not os.path.exists("/etc/ocirun-pwned")
    after = sorted(str(p.relative_to(root)) for p in root.rglob("*") if "locks" not in p.parts)
    assert after == before
    cp = run_ocirun("--root", root, "pull", _push_crafted(registry, tmp_path, "library/dotdot", [[("file", "a", "a")]]))
    assert cp.returncode == 0, cp.stderr


def test_two_cli_pulls_of_one_image_at_once(registry, tmp_path):
    import subprocess

    from tests.helpers import ocirun_argv, ocirun_env
    from tests.layers.tarbuild import many_files

    ref = _push_crafted(registry, tmp_path, "library/many", [many_files(3000), many_files(1000, "g")])
    root = tmp_path / "root"
    procs = [
        subprocess.Popen(ocirun_argv("--root", root, "pull", "-q", ref), env=ocirun_env(),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert len(os.listdir(root / "images")) == 1
    (image_dir,) = os.listdir(root / "images")
    assert len(os.listdir(root / "images" / image_dir / "rootfs")) == 40
    assert [e for e in os.listdir(root / "tmp") if e != "partial"] == []
    cp = run_ocirun("--root", root, "images", "-q")
    assert len(cp.stdout.split()) == 1


def test_load_docker_archive_and_oci_layout(tmp_path):
    import subprocess

    layout = build_layout(tmp_path / "layout", busybox_images(), tag="1")
    archive = tmp_path / "bb.tar"
    single = build_layout(tmp_path / "single", busybox_images(("linux/amd64",)), tag="1")
    subprocess.run(["skopeo", "--insecure-policy", "copy", "--quiet", f"oci:{single}:1",
                    f"docker-archive:{archive}:myorg/bb:7"], check=True, capture_output=True)
    root = tmp_path / "root"
    cp = run_ocirun("--root", root, "load", "-i", archive)
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout.strip() == "Loaded image: myorg/bb:7"
    cp = run_ocirun("--root", root, "inspect", "-f", "Rootfs", "myorg/bb:7")
    rootfs = cp.stdout.strip()
    assert os.path.isfile(os.path.join(rootfs, "bin/busybox"))
    # an OCI layout directory (multi-platform: the host's image), and from stdin
    cp = run_ocirun("--root", root, "load", "-i", layout)
    assert cp.returncode == 0 and cp.stdout.startswith("Loaded image"), cp.stderr
    with open(archive, "rb") as f:
        cp = run_ocirun("--root", tmp_path / "root2", "load", input=f.read(), text=False)
    assert cp.returncode == 0 and b"Loaded image: myorg/bb:7" in cp.stdout, cp.stderr
    # an archive reference pulls (and runs) without a registry
    cp = run_ocirun("--root", root, "pull", "--platform", "linux/arm64", f"oci:{layout}:1")
    assert cp.returncode == 0, cp.stderr
    cp = run_ocirun("--root", root, "images")
    assert "linux/arm64/v8" in cp.stdout and "myorg/bb" in cp.stdout


def test_pull_killed_mid_unpack_then_pull_again(registry, tmp_path):
    import signal
    import subprocess
    import time

    from tests.helpers import ocirun_argv, ocirun_env
    from tests.layers.tarbuild import many_files

    ref = _push_crafted(registry, tmp_path, "library/big", [many_files(20000, size=1000)])
    root = tmp_path / "root"
    proc = subprocess.Popen(ocirun_argv("--root", root, "pull", "-q", ref), env=ocirun_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        tmp = root / "tmp"
        stages = [e for e in os.listdir(tmp) if e.startswith("unpack-")] if tmp.is_dir() else []
        if stages and (tmp / stages[0] / "rootfs" / "f5").is_dir():
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the pull ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    assert run_ocirun("--root", root, "images", "-q").stdout == ""
    assert run_ocirun("--root", root, "inspect", ref).returncode == 125
    cp = run_ocirun("--root", root, "pull", "-q", ref)
    assert cp.returncode == 0, cp.stderr
    cp = run_ocirun("--root", root, "inspect", "-f", "Rootfs", ref)
    assert len(os.listdir(cp.stdout.strip())) == 200
    assert [e for e in os.listdir(root / "tmp") if e != "partial"] == []


def test_login_pull_logout_basic_auth(tmp_path):
    reg = start_registry(tmp_path / "reg", auth="basic")
    try:
        push(build_layout(tmp_path / "layout", busybox_images(("linux/amd64",)), tag="1"), reg, "team/bb:1")
        env = {"OCIRUN_AUTH_FILE": str(tmp_path / "auth.json"), "HOME": str(tmp_path),
               "DOCKER_CONFIG": str(tmp_path / "docker"), "XDG_RUNTIME_DIR": str(tmp_path / "run")}
        root = tmp_path / "root"
        ref = f"{reg.host}/team/bb:1"
        cp = run_ocirun("--root", root, "pull", ref, env=env)
        assert_one_line_error(cp, 125)
        cp = run_ocirun("login", "-u", reg.user, "--password-stdin", reg.host, input="wrong\n", env=env)
        assert_one_line_error(cp, 125)
        cp = run_ocirun("login", "-u", reg.user, "--password-stdin", reg.host, input=reg.password + "\n", env=env)
        assert cp.returncode == 0 and "Login Succeeded" in cp.stdout, cp.stderr
        assert (tmp_path / "auth.json").stat().st_mode & 0o777 == 0o600
        cp = run_ocirun("--root", root, "pull", "-q", ref, env=env)
        assert cp.returncode == 0, cp.stderr
        cp = run_ocirun("logout", reg.host, env=env)
        assert cp.returncode == 0 and f"Removing login credentials for {reg.host}" in cp.stdout
        cp = run_ocirun("--root", tmp_path / "root2", "pull", ref, env=env)
        assert_one_line_error(cp, 125)
    finally:
        reg.stop()


@pytest.mark.parametrize(("data", "words"), [("", "stdin is empty"), ("not a tar\n" * 100, "archive stdin")])
def test_load_from_bad_stdin_names_stdin_and_leaves_no_copy(tmp_path, data, words):
    cp = run_ocirun("--root", str(tmp_path), "load", input=data)
    line = assert_one_line_error(cp, 125)
    assert words in line and "load-" not in line
    assert not list((tmp_path / "tmp").glob("load-*"))


def test_pull_of_archive_reference_says_no_default_tag(tmp_path):
    cp = run_ocirun("--root", str(tmp_path), "pull", f"docker-archive:{tmp_path / 'absent.tar'}")
    assert "absent.tar" in assert_one_line_error(cp, 125)
    assert "default tag" not in cp.stdout


def test_login_with_empty_password_stdin_says_so(tmp_path):
    cp = run_ocirun("--root", str(tmp_path), "login", "-u", "alice", "--password-stdin", "127.0.0.1:9", input="",
                    env={"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path), "XDG_RUNTIME_DIR": str(tmp_path)})
    line = assert_one_line_error(cp, 125)
    assert "no password on stdin" in line
