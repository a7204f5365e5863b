"""execve in the compiled fast path (ocirun/engine/_fastexec.c, fastexec.py): the second
and later runs of a program are carried out in C from the first run's plan, and only
while the program, its loader and the name run are what that plan was made from."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.helpers import ocirun_argv, ocirun_env

# every step twice (the second from the exec record, when the fast path runs): the
# exe, comm and cmdline of a copied program, run by its name, through a symlink of
# another name and relatively; `exec -a`; then the same file rewritten in place as a
# script, as another program, made unexecutable
SCRIPT = """
cp /usr/bin/cat /w/catx && ln -s /w/catx /w/caty && cp /usr/bin/readlink /w/rl
for i in 1 2; do /w/rl /proc/self/exe; done
for i in 1 2; do /w/catx /proc/self/comm; done
for i in 1 2; do /w/caty /proc/self/comm; /w/caty /proc/self/cmdline | tr '\\0' ' '; echo; done
for i in 1 2; do bash -c 'exec -a named /w/catx /proc/self/cmdline' | tr '\\0' ' '; echo; done
cd /w; for i in 1 2; do ./catx /proc/self/comm; ./rl /proc/self/exe; done; cd /
printf '#!/bin/sh\\necho script "$0" "$@"\\n' > /w/rl
for i in 1 2; do /w/rl a b; done
cat /usr/bin/true > /w/rl; for i in 1 2; do /w/rl /proc/self/exe; echo "true: $?"; done
cat /usr/bin/readlink > /w/rl; for i in 1 2; do /w/rl /proc/self/exe; done
chmod a-x /w/rl; for i in 1 2; do /w/rl 2>/dev/null; echo "noexec: $?"; done
for i in 1 2; do PATH=/nowhere:/usr/local/bin:/w:/usr/bin env catx /proc/self/comm; done
for i in 1 2; do /w/nothere 2>/dev/null; echo "missing: $?"; done
for i in 1 2 3 4 5 6 7 8 9 10; do /bin/true; done
"""
EXPECTED = (["/w/rl"] * 2 + ["catx"] * 2 + ["caty", "/w/caty /proc/self/cmdline "] * 2
            + ["named /proc/self/cmdline "] * 2 + ["catx", "/w/rl"] * 2 + ["script /w/rl a b"] * 2
            + ["true: 0"] * 2 + ["/w/rl"] * 2 + ["noexec: 126"] * 2 + ["catx"] * 2 + ["missing: 127"] * 2)
FALLBACKS = re.compile(r"fast path: (\d+) execve to Python")
TREE_STATS = re.compile(r"also (\d+) signal stops, (\d+) first stops, (\d+) exec events, (\d+) ends, (\d+) fork events")


def _run_in_w(rootfs: Path, tmp_path: Path, no_fastpath: str, script: str) -> subprocess.CompletedProcess:
    """`sh -c script` in the Debian tree with a scratch directory at /w, the fast path's
    counts on stderr; it must succeed."""
    (tmp_path / "w").mkdir()
    env = ocirun_env({"OCIRUN_NO_FASTPATH": no_fastpath, "OCIRUN_FASTPATH_STATS": "2", "OCIRUN_NO_SECCOMP": "0"})
    p = subprocess.run(ocirun_argv("proot", "-r", rootfs, "-b", "/proc", "-b", "/dev", "-b", f"{tmp_path / 'w'}:/w", "sh", "-c", script),
                       env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    return p


@pytest.mark.parametrize("no_fastpath", ["0", "1"])
def test_exec_records_follow_the_files(debian_rootfs: Path, tmp_path: Path, no_fastpath: str) -> None:
    p = _run_in_w(debian_rootfs, tmp_path, no_fastpath, SCRIPT)
    assert p.stdout.split("\n")[:-1] == EXPECTED, p.stderr
    if no_fastpath == "0":
        to_python = sum(int(n) for n in FALLBACKS.findall(p.stderr))
        execs = 2 * 20 + 10 + 4  # the loops' programs, cp/ln/printf's siblings and more run by sh
        assert to_python < execs // 2, p.stderr  # the first run of each, and each change


# forks, execs and ends the fast path resumes and hands to Python later: exit statuses, the
# exe of a parent and of children read while others run, an exec in place
TREE = """
for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14; do sh -c "exit $((i % 7))"; printf '%s ' $?; done; echo
for i in 1 2 3; do /usr/bin/readlink /proc/self/exe & done; wait
sh -c 'readlink /proc/$$/exe; exec /usr/bin/readlink /proc/self/exe'
"""
TREE_OUT = ["1 2 3 4 5 6 0 1 2 3 4 5 6 0 ", *["/usr/bin/readlink"] * 3, "/usr/bin/dash", "/usr/bin/readlink"]


@pytest.mark.parametrize("no_fastpath", ["0", "1"])
def test_execs_and_ends_handed_on_in_order(debian_rootfs: Path, no_fastpath: str) -> None:
    env = ocirun_env({"OCIRUN_NO_FASTPATH": no_fastpath, "OCIRUN_NO_SECCOMP": "0", "OCIRUN_FASTPATH_STATS": "1"})
    p = subprocess.run(ocirun_argv("proot", "-r", debian_rootfs, "-b", "/proc", "-b", "/dev", "sh", "-c", TREE),
                       env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split("\n")[:-1] == TREE_OUT, p.stderr
    tree = TREE_STATS.search(p.stderr)
    if no_fastpath == "1":
        assert tree is None, p.stderr
    else:  # the 14 sh -c and the others: their fork events, first stops, exec events and ends in C
        assert tree and min(int(tree[2]), int(tree[3]), int(tree[4]), int(tree[5])) >= 14, p.stderr


# relative names after cd: the shell makes no relative-path call itself, its children's
# cwd comes from the first child's (fastpath.mirror_cwd); a cd anywhere forgets it
CD = """
mkdir -p /w/a /w/b && cp /usr/bin/readlink /w/a/prog && cp /usr/bin/readlink /w/b/prog
cd /w/a; for i in 1 2 3 4 5; do ./prog /proc/self/exe; done
cd /w/b; for i in 1 2 3 4 5; do ./prog /proc/self/exe; done
(cd /w/a; ./prog /proc/self/exe); ./prog /proc/self/exe
cd ..; a/prog /proc/self/exe; b/prog /proc/self/exe
"""
BASE = re.compile(r"fast path: (\d+) execve to Python: base")


@pytest.mark.parametrize("no_fastpath", ["0", "1"])
def test_relative_execs_after_cd(debian_rootfs: Path, tmp_path: Path, no_fastpath: str) -> None:
    p = _run_in_w(debian_rootfs, tmp_path, no_fastpath, CD)
    assert p.stdout.split() == ["/w/a/prog"] * 5 + ["/w/b/prog"] * 5 + ["/w/a/prog", "/w/b/prog"] * 2, p.stderr
    if no_fastpath == "0":  # one relative exec in Python after each of the 4 cds
        assert sum(int(n) for n in BASE.findall(p.stderr)) <= 4, p.stderr


# scripts (one "#!" line, an interpreter with an exec record) run again from C: $0, the
# arguments, the interpreter's cmdline, exe and comm, by a relative name and a symlink;
# then the line changed (another interpreter, an argument), the script made unexecutable,
# its interpreter gone
SCRIPTS = r"""
printf '#!/bin/sh -e\necho "$0" "$@"; tr "\\0" " " < /proc/$$/cmdline; echo; readlink /proc/$$/exe; cat /proc/$$/comm\n' > /w/s
chmod +x /w/s; ln -s /w/s /w/t
for i in 1 2; do /w/s a "b c"; done
cd /w; for i in 1 2; do ./s d; ./t; done; cd /
printf '#!/bin/bash\necho "bash $0 ${BASH_VERSION%%%%.*}"\n' > /w/s; for i in 1 2; do /w/s; done
printf '#!/bin/sh\necho "sh $0 $1"\n' > /w/s; for i in 1 2; do /w/s e; done
chmod a-x /w/s; for i in 1 2; do /w/s 2>/dev/null; echo "noexec: $?"; done; chmod a+x /w/s
printf '#!/w/nothere\n' > /w/s; for i in 1 2; do /w/s 2>/dev/null; echo "no interpreter: $?"; done
"""
SCRIPTS_OUT = (["/w/s a b c", "/bin/sh -e /w/s a b c ", "/usr/bin/dash", "s"] * 2
               + ["./s d", "/bin/sh -e ./s d ", "/usr/bin/dash", "s", "./t", "/bin/sh -e ./t ", "/usr/bin/dash", "t"] * 2
               + ["bash /w/s 5"] * 2 + ["sh /w/s e"] * 2 + ["noexec: 126"] * 2 + ["no interpreter: 127"] * 2)


@pytest.mark.parametrize("no_fastpath", ["0", "1"])
def test_scripts_run_again_from_c(debian_rootfs: Path, tmp_path: Path, no_fastpath: str) -> None:
    p = _run_in_w(debian_rootfs, tmp_path, no_fastpath, SCRIPTS)
    assert p.stdout.split("\n")[:-1] == SCRIPTS_OUT, p.stderr
    if no_fastpath == "0":  # the first run of each program and script, each change, the failures
        assert sum(int(n) for n in FALLBACKS.findall(p.stderr)) <= 15, p.stderr  # 20 with no script in C
