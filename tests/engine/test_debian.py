"""Real programs in the Debian bookworm minbase tree (read-only fixture; writes
go to bound temporary directories)."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

from tests.engine.conftest import ok, proot


def test_bash_and_coreutils(debian_rootfs: Path, mode_env: dict) -> None:
    out = ok(proot("-r", debian_rootfs, "-b", "/dev", "bash", "-c",
                   'echo "$BASH_VERSION" | cut -d. -f1; cat /etc/debian_version | cut -d. -f1; '
                   "ls /usr/bin | grep -c . >/dev/null && echo listed; "
                   "stat -c %F /bin /etc/passwd; wc -l < /etc/passwd | tr -d ' ' | grep -q . && echo counted",
                   env=mode_env))
    assert out.splitlines() == ["5", "12", "listed", "symbolic link", "regular file", "counted"]


def test_find_matches_the_tree(debian_rootfs: Path) -> None:
    out = ok(proot("-r", debian_rootfs, "find", "/usr/share/doc", "-maxdepth", "1", "-name", "bash"))
    assert out == "/usr/share/doc/bash\n"
    n_guest = int(ok(proot("-r", debian_rootfs, "sh", "-c", "find /usr/lib | wc -l")))
    n_host = 1 + sum(len(d) + len(f) for _, d, f in os.walk(debian_rootfs / "usr/lib"))
    assert n_guest == n_host


def test_tar_extracts_into_a_bound_directory(debian_rootfs: Path, tmp_path: Path, mode_env: dict) -> None:
    src = tmp_path / "src"
    for i in range(50):
        (src / f"d{i % 5}").mkdir(parents=True, exist_ok=True)
        (src / f"d{i % 5}" / f"f{i}").write_text(f"file {i}\n")
    (src / "link").symlink_to("/etc/passwd")
    tarball = tmp_path / "t.tar"
    with tarfile.open(tarball, "w") as tf:
        tf.add(src, arcname="src")
    work = tmp_path / "work"
    work.mkdir()
    ok(proot("-r", debian_rootfs, "-b", f"{tmp_path}:/work", "-w", "/work/work",
             "tar", "xf", "/work/t.tar", env=mode_env))
    assert (work / "src/d3/f13").read_text() == "file 13\n"
    assert os.readlink(work / "src/link") == "/etc/passwd"
    out = ok(proot("-r", debian_rootfs, "-b", f"{tmp_path}:/work", "sh", "-c",
                   "cd /work/work/src && cat d0/f0 && head -1 link", env=mode_env))
    assert out.splitlines()[0] == "file 0"
    assert out.splitlines()[1].startswith("root:x:0:0")  # the guest's /etc/passwd


def test_dpkg_lists_packages(debian_rootfs: Path) -> None:
    out = ok(proot("-r", debian_rootfs, "dpkg", "-l"))
    assert "ii  bash " in out and "ii  coreutils " in out
    assert ok(proot("-r", debian_rootfs, "dpkg-query", "-W", "-f", "${Version}", "base-files")).startswith("12")


def test_shebang_chain(debian_rootfs: Path, tmp_path: Path, mode_env: dict) -> None:
    d = tmp_path / "s"
    d.mkdir()
    (d / "inner").write_text("#!/bin/sh -e\necho inner \"$@\"\n")
    (d / "outer").write_text("#!/w/inner outer-arg\n")
    (d / "py").write_text("#! /usr/bin/env  bash \necho bash-via-env $0 $1\n")
    for f in d.iterdir():
        f.chmod(0o755)
    out = ok(proot("-r", debian_rootfs, "-b", f"{d}:/w", "/w/outer", "x", env=mode_env))
    assert out == "inner outer-arg /w/outer x\n"
    out = ok(proot("-r", debian_rootfs, "-b", f"{d}:/w", "sh", "-c", "cd /w && ./py a", env=mode_env))
    assert out == "bash-via-env ./py a\n"


def test_cd_through_guest_symlinks(debian_rootfs: Path, mode_env: dict) -> None:
    # /bin -> usr/bin and /lib64 -> usr/lib64 exist only as guest symlinks
    out = ok(proot("-r", debian_rootfs, "bash", "-c", "cd /bin && pwd && pwd -P && ls ./bash", env=mode_env))
    assert out.splitlines() == ["/bin", "/usr/bin", "./bash"]


def test_absolute_symlink_resolves_in_the_guest(debian_rootfs: Path, tmp_path: Path, mode_env: dict) -> None:
    d = tmp_path / "s"
    d.mkdir()
    (d / "escape").symlink_to("/etc/debian_version")
    (d / "dotdot").symlink_to("../../../../../../../../etc/debian_version")
    (tmp_path / "etc").mkdir()
    out = ok(proot("-r", debian_rootfs, "-b", f"{d}:/w", "sh", "-c",
                   "cat /w/escape; cat /w/dotdot; cat /../../../../etc/debian_version", env=mode_env))
    guest = (debian_rootfs / "etc/debian_version").read_text()
    assert out == guest * 3


def test_bind_a_file_and_a_directory(debian_rootfs: Path, tmp_path: Path, mode_env: dict) -> None:
    f = tmp_path / "hosts"
    f.write_text("10.9.8.7 bound-host\n")
    d = tmp_path / "data"
    d.mkdir()
    (d / "x").write_text("in-dir\n")
    out = ok(proot("-r", debian_rootfs, "-b", f"{f}:/etc/hosts", "-b", f"{d}:/srv/data",
                   "sh", "-c", "cat /etc/hosts /srv/data/x; echo new > /srv/data/y; ls /srv/data", env=mode_env))
    assert out == "10.9.8.7 bound-host\nin-dir\nx\ny\n"
    assert (d / "y").read_text() == "new\n"


def test_bind_onto_a_missing_guest_path(debian_rootfs: Path, tmp_path: Path) -> None:
    d = tmp_path / "d"
    d.mkdir()
    (d / "x").write_text("x\n")
    out = ok(proot("-r", debian_rootfs, "-b", f"{d}:/no/such/dir", "sh", "-c",
                   "cat /no/such/dir/x; ls /no/such; cd /no/such/dir && pwd"))
    assert out == "x\ndir\n/no/such/dir\n"


def test_bindings_longest_match_and_getcwd_in_a_binding(debian_rootfs: Path, tmp_path: Path) -> None:
    outer = tmp_path / "outer"
    inner = tmp_path / "inner"
    (outer / "sub").mkdir(parents=True)
    inner.mkdir()
    (outer / "sub" / "f").write_text("outer\n")
    (inner / "f").write_text("inner\n")
    out = ok(proot("-r", debian_rootfs, "-b", f"{outer}:/m", "-b", f"{inner}:/m/sub",
                   "sh", "-c", "cat /m/sub/f; cd /m/sub && /bin/pwd"))
    assert out == "inner\n/m/sub\n"


def test_R_binds_the_host_proc_and_tmp(debian_rootfs: Path) -> None:
    out = ok(proot("-R", debian_rootfs, "bash", "-c",
                   "readlink /proc/self/exe; test -d /proc/1 && echo proc; cat <(echo procsub); "
                   "echo viafd > /dev/stderr; cat /dev/stdin", input="stdin-data\n"))
    assert out.splitlines() == ["/usr/bin/readlink", "proc", "procsub", "stdin-data"]


def test_readlink_proc_self_fd_and_cwd(debian_rootfs: Path, tmp_path: Path) -> None:
    out = ok(proot("-R", debian_rootfs, "-b", f"{tmp_path}:/w", "bash", "-c",
                   "cd /w && exec 3</etc/passwd && readlink /proc/self/fd/3 /proc/$$/cwd /proc/self/root"))
    assert out.splitlines() == ["/etc/passwd", "/w", "/"]


def test_path_cache_follows_the_guests_own_changes(bb_rw: Path, mode_env: dict) -> None:
    script = (
        "cd /tmp && echo a > f && cat f && rm f && mkdir f && echo b > f/x && cat f/x && "
        "ln -s /etc/passwd l && head -c 4 l && echo && rm l && echo c > l && cat l && cat /etc/passwd | head -c 4 && echo && "
        "mkdir -p d1/s && echo d > d1/s/y && mv d1 d2 && cat d2/s/y && ! test -e d1/s/y && "
        "ln -s d2 d3 && cat d3/s/y && rm d3 && mkdir d3 && ! test -e d3/s/y && rm -r d2 && mkdir -p d2/s && "
        "! test -e d2/s/y && ln -s /tmp/d2 abs && echo e > abs/s/z && cat /tmp/d2/s/z && echo ok"
    )
    out = ok(proot("-r", bb_rw, "sh", "-c", script, env=mode_env))
    assert out == "a\nb\nroot\nc\nroot\nd\nd\ne\nok\n"


def test_ps_shows_the_programs_own_argv(debian_rootfs: Path) -> None:
    """Dynamic programs run through the guest's ld.so; /proc/PID/cmdline must not show it."""
    out = ok(proot("-R", debian_rootfs, "bash", "-c",
                   "cat /proc/self/cmdline | tr '\\0' ' '; echo; cd /proc/$$ && tr '\\0' ' ' < cmdline; echo"))
    lines = out.splitlines()
    assert lines[0] == "cat /proc/self/cmdline "
    assert lines[1].startswith("bash -c cat /proc/self/cmdline")


def test_xargs_with_a_huge_argv(debian_rootfs: Path) -> None:
    """Dynamic programs get a longer argv (the loader's words); when that does not fit
    below the guest's stack pointer the guest sees E2BIG and xargs splits the list."""
    out = ok(proot("-r", debian_rootfs, "-b", "/dev", "bash", "-c", "seq 1 30000 | xargs echo | wc -w"))
    assert out == "30000\n"
