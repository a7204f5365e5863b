"""Site-wide read-only image stores (layers/sites.py): searched after the user's own.

The site store is pulled into by the test's own user, then made read-only (every
write bit off). In the root pass it is root's, and the second user is the
unprivileged test user (the root-owned store a cluster's users see); in the other
pass both "users" are the test user with two private stores.
"""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT, assert_one_line_error, is_root, ocirun_env, run_ocirun

OTHER_USER = os.environ.get("OCIRUN_TEST_USER", "ocirun-test")


def snapshot(root: Path) -> dict[str, tuple]:
    """What must not change: names, types, modes, owners, sizes, mtimes, contents."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            digest = ""
            if stat.S_ISREG(st.st_mode):
                digest = hashlib.sha256(Path(p).read_bytes()).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                digest = os.readlink(p)
            out[os.path.relpath(p, root)] = (st.st_mode, st.st_uid, st.st_size, st.st_mtime_ns, digest)
    return out


def read_only(root: Path) -> None:
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            if not stat.S_ISLNK(st.st_mode):
                os.chmod(p, stat.S_IMODE(st.st_mode) & ~0o222 | 0o444 | (0o111 if stat.S_ISDIR(st.st_mode) else 0))
    os.chmod(root, 0o555)


@pytest.fixture
def tmp_path(tmp_path: Path):
    """As root, a directory the other user can reach (pytest's is root's only)."""
    if not is_root():
        os.chmod(tmp_path, 0o755)
        yield tmp_path
        return
    path = Path(tempfile.mkdtemp(prefix="ocirun-site-test-", dir="/var/tmp"))
    os.chmod(path, 0o755)
    yield path
    subprocess.run(["chmod", "-R", "u+w", str(path)], check=False)
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def site(registry_images, tmp_path: Path):
    """A read-only store holding the busybox test image."""
    root = tmp_path / "site"
    assert run_ocirun("--root", root, "pull", "-q", registry_images.busybox).returncode == 0
    shutil.rmtree(root / "tmp", ignore_errors=True)
    read_only(root)
    yield root
    subprocess.run(["chmod", "-R", "u+w", str(root)], check=False)


def other_user_argv(tmp_path: Path) -> tuple[list[str], dict[str, str]]:
    """argv prefix and PYTHONPATH to run ocirun as the second user (see the module doc)."""
    if not is_root():
        return [], {}
    code = tmp_path / "code"
    for pkg in ("ocirun", "layers", "registry"):
        shutil.copytree(REPO_ROOT / pkg, code / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(["chmod", "-R", "a+rX", str(code)], check=True)
    return ["runuser", "-u", OTHER_USER, "--"], {"PYTHONPATH": str(code)}


def user_env(tmp_path: Path, who: str, site: Path, via_config: bool, pythonpath: dict[str, str]) -> dict[str, str]:
    home = tmp_path / who
    home.mkdir(mode=0o777)
    os.chmod(home, 0o777)
    env = ocirun_env({"OCIRUN_ROOT": str(home / "store"), "XDG_CONFIG_HOME": str(home / "config"), **pythonpath})
    env.pop("OCIRUN_ADDITIONAL_STORES", None)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath["PYTHONPATH"]
        env["HOME"] = pwd.getpwnam(OTHER_USER).pw_dir
    if via_config:
        (home / "config" / "ocirun").mkdir(parents=True)
        (home / "config" / "ocirun" / "config.json").write_text(json.dumps({"additionalimagestores": [str(site)]}))
        subprocess.run(["chmod", "-R", "a+rX", str(home / "config")], check=True)
    else:
        env["OCIRUN_ADDITIONAL_STORES"] = f"{tmp_path / 'no-such-store'}:{site}"
    return env


def ocirun_as(prefix: list[str], env: dict[str, str], *args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([*prefix, sys.executable, "-m", "ocirun", *map(str, args)], env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def finish(p: subprocess.Popen, timeout: float = 120) -> subprocess.CompletedProcess:
    out, err = p.communicate(timeout=timeout)
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)


# Changes a file, a directory and a symlink of the image. The container's first run prints
# "first", later runs the mark of the first.
GUEST = ('cat /mark 2>/dev/null || echo first; echo "$WHO" > /mark && touch -d "2001-01-01 00:00" /bin/busybox '
         '&& rm -f /bin/ls && chmod 700 /bin && sleep 1 && [ ! -e /bin/ls ]')


def test_two_users_run_one_site_image_at_once(site, registry_images, tmp_path) -> None:
    before = snapshot(site)
    prefix, pythonpath = other_user_argv(tmp_path)
    users = [([], user_env(tmp_path, "alice", site, False, {})),
             (prefix, user_env(tmp_path, "bob", site, True, pythonpath))]
    procs = [ocirun_as(p, e, "run", "--pull", "never", "--name", f"c-{i}", "-e", f"WHO=user{i}",
                       registry_images.busybox, "sh", "-c", GUEST)
             for i, (p, e) in enumerate(users)]
    for proc in procs:
        cp = finish(proc)
        assert cp.returncode == 0 and cp.stdout == "first\n", cp.stderr
    assert snapshot(site) == before
    assert not (site / "containers").exists()
    for i, (p, e) in enumerate(users):
        store = Path(e["OCIRUN_ROOT"])
        assert os.listdir(store / "images") == []  # no copy of the image
        ps = finish(ocirun_as(p, e, "ps", "-a"))
        assert f"c-{i}" in ps.stdout, ps.stderr
        assert (store / "containers").is_dir()
        again = finish(ocirun_as(p, e, "start", "-a", f"c-{i}"))  # the container's own changes stay
        assert again.returncode == 0 and again.stdout == f"user{i}\n", again.stderr
    assert snapshot(site) == before


def test_images_shows_where_each_image_comes_from(site, registry_images, tmp_path) -> None:
    env = user_env(tmp_path, "carol", site, False, {})
    image = registry_images.busybox
    line = assert_one_line_error(run_ocirun("rmi", image, env=env))
    assert "read-only image store" in line
    doc = json.loads(run_ocirun("image", "inspect", image, env=env).stdout)[0]
    assert doc["Store"] == str(site) and doc["Rootfs"].startswith(str(site))
    assert run_ocirun("pull", "-q", image, env=env).returncode == 0  # the user's own copy now
    cp = run_ocirun("images", env=env)
    assert cp.returncode == 0 and cp.stdout.splitlines()[0].split()[-1] == "STORE", cp.stdout
    stores = sorted(line.split()[-1] for line in cp.stdout.splitlines()[1:])
    assert stores == sorted([str(site), "user"]), cp.stdout
    assert json.loads(run_ocirun("image", "inspect", image, env=env).stdout)[0]["Store"] == env["OCIRUN_ROOT"]
    no_sites = {k: v for k, v in env.items() if k != "OCIRUN_ADDITIONAL_STORES"}
    assert "STORE" not in run_ocirun("images", env=no_sites).stdout  # docker's columns otherwise


def test_env_wins_over_the_config_file(tmp_path, monkeypatch) -> None:
    from layers.sites import additional_store_paths

    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"additionalimagestores": ["/a", "/b"]}))
    monkeypatch.setenv("OCIRUN_CONFIG", str(cfg))
    assert additional_store_paths({}) == [Path("/a"), Path("/b")]
    assert additional_store_paths({"OCIRUN_ADDITIONAL_STORES": "/c::/c"}) == [Path("/c")]
    assert additional_store_paths({"OCIRUN_ADDITIONAL_STORES": ""}) == []
    cfg.write_text("[")
    line = assert_one_line_error(run_ocirun("images", env={"OCIRUN_CONFIG": str(cfg), "OCIRUN_ROOT": str(tmp_path)}))
    assert "cannot read config" in line


def test_system_check_reports_a_damaged_site_store_and_leaves_it_alone(site, tmp_path) -> None:
    """A user's `system check` looks at the site stores it searches too; damage there is
    reported with who can repair it, and neither check nor --repair writes to the site."""
    env = user_env(tmp_path, "dave", site, False, {})
    clean = run_ocirun("system", "check", env=env)
    assert clean.returncode == 0 and clean.stdout.strip() == "no damage found", clean.stdout + clean.stderr
    blob = max((p for p in (site / "blobs").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    os.chmod(blob, 0o644)
    with open(blob, "r+b") as f:
        f.seek(100)
        f.write(b"damage")
    os.chmod(blob, 0o444)
    before = snapshot(site)
    for args in (["system", "check"], ["system", "check", "--repair"]):
        cp = run_ocirun(*args, env=env)
        assert cp.returncode == 1 and "Traceback" not in cp.stderr, cp.stdout + cp.stderr
        (line,) = cp.stdout.splitlines()
        assert line.startswith(f"site store {site}: blob sha256:{blob.name}"), line
        assert f"ocirun --root {site} system check --repair" in line and "repair would:" in line, line
    assert snapshot(site) == before
