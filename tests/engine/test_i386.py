"""32-bit x86 programs on an x86_64 host, traced natively (int 0x80, i386 numbers,
socketcall), static and dynamic (`gcc -m32`, the host's ld-linux.so.2 under `-r /`),
compared with the same program run natively."""

from __future__ import annotations

import os
import platform
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from tests.engine.conftest import ok, proot

SRC = Path(__file__).resolve().parent / "i386" / "prog32.c"

pytestmark = pytest.mark.skipif(platform.machine() != "x86_64", reason="i386 programs run natively on x86_64 only")


@pytest.fixture(scope="session")
def progs32(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """prog32 (dynamic, /lib/ld-linux.so.2) and prog32.static, world-readable."""
    out = tmp_path_factory.mktemp("progs32")
    os.chmod(out, 0o755)
    for name, extra in (("prog32", []), ("prog32.static", ["-static"])):
        proc = subprocess.run(["gcc", "-m32", *extra, "-O2", "-Wall", "-o", str(out / name), str(SRC)],
                              capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if proc.returncode != 0:
            pytest.fail(f"gcc -m32 failed (gcc-multilib, scripts/deps/apt.txt):\n{proc.stderr}", pytrace=False)
    return out


def _tree(base: Path, progs: Path) -> Path:
    """A directory the guest sees at /x: the programs, a file, a relative symlink."""
    d = base / "d"
    d.mkdir(parents=True)
    os.chmod(base, 0o755)
    os.chmod(d, 0o777)
    for p in progs.iterdir():
        shutil.copy2(p, d / p.name)
    (d / "f").write_text("data\n")
    (d / "l").symlink_to("f")
    return d


ACTIONS = ["cwd", "stat={d}/f", "lstat={d}/l", "stat={d}/missing", "readlink={d}/l", "cat={d}/f",
           "mkdir={d}/new", "mkdir={d}/new", "unix={d}/sock", "unix-direct={d}/sock2", "readlink=/proc/self/exe",
           "run={d}/{other}", "cwd", "readlink=/proc/self/exe", "stat={d}/new"]


@pytest.mark.parametrize("prog,other", [("prog32", "prog32.static"), ("prog32.static", "prog32")])
def test_i386_program_sees_the_guest_like_native(tmp_path: Path, progs32: Path, mode_env: dict,
                                                 prog: str, other: str) -> None:
    """Paths (stat64, lstat64, readlink, open, mkdir), getcwd, AF_UNIX addresses through
    socketcall and the direct calls, /proc/self/exe and exec of another i386 program."""
    native_dir = _tree(tmp_path / "native", progs32)
    guest_dir = _tree(tmp_path / "guest", progs32)
    args = [a.format(d=native_dir, other=other) for a in ACTIONS]
    native = subprocess.run([str(native_dir / prog), *args], cwd=native_dir, capture_output=True, text=True,
                            check=True).stdout
    args = [a.format(d="/x", other=other) for a in ACTIONS]
    out = ok(proot("-r", "/", "-b", f"{guest_dir}:/x", "-w", "/x", f"/x/{prog}", *args, env=mode_env))
    assert out == native.replace(str(native_dir), "/x")
    assert "pointer=4\n" in out and "bind /x/sock: ok\n" in out and "readlink /proc/self/exe: /x/prog32" in out
    assert (guest_dir / "new").is_dir()


def test_64_bit_shell_runs_i386_and_back(tmp_path: Path, progs32: Path, mode_env: dict) -> None:
    """A process switches ABI at exec: 64-bit sh -> 32-bit program -> 64-bit program."""
    d = _tree(tmp_path, progs32)
    out = ok(proot("-r", "/", "-b", f"{d}:/x", "-w", "/x", "/bin/sh", "-c",
                   "/x/prog32 cwd run=/bin/sh -c 'cd /x && pwd && /x/prog32.static stat=/x/f'", env=mode_env))
    assert out.splitlines() == ["pointer=4", "cwd: /x", "/x", "pointer=4",
                                f"stat /x/f: mode=100644 uid={os.getuid()} size=5", "exit: 0"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_i386_port_mapping(progs32: Path, mode_env: dict) -> None:
    """-p: the guest's bind (through socketcall) lands on the host port, getsockname shows its own."""
    host_port = _free_port()
    out = ok(proot("-r", "/", "-p", f"8080:{host_port}", f"{progs32}/prog32", "tcp=8080", env=mode_env))
    assert out.splitlines() == ["pointer=4", "tcp getsockname: 8080"]
    with socket.socket() as held:  # the host port taken: the guest's bind fails, so it was that port
        held.bind(("127.0.0.1", host_port))
        held.listen(1)
        out = ok(proot("-r", "/", "-p", f"8080:{host_port}", f"{progs32}/prog32.static", "tcp=8080", env=mode_env))
    assert out.splitlines() == ["pointer=4", "tcp bind: EADDRINUSE"]


STAT_CALLS = ["stat64", "lstat64", "fstatat64", "fstat64", "stat"]


def _stat_lines(path: str, uid: int, gid: int, size: int) -> list[str]:
    lines = [f"{call} {path}: mode=100644 uid={uid} gid={gid} size={size} nlink=1 ino=ok" for call in STAT_CALLS[:-1]]
    return lines + [f"stat {path}: mode=100644 uid={uid} size={size}"]


def test_i386_fake_root(tmp_path: Path, progs32: Path, mode_env: dict) -> None:
    """-0 for a 32-bit program: getuid32 & co, the auxv's AT_*ID (4-byte words), struct stat64
    from stat64/lstat64/fstatat64/fstat64 and statx; chown32 is recorded and shown."""
    root = tmp_path / "root"
    root.mkdir()
    shutil.copy2(progs32 / "prog32.static", root / "prog")
    (root / "f").write_text("12345\n")
    stats = [f"{call}=/f" for call in STAT_CALLS]
    out = ok(proot("-0", "-r", root, "/prog", "ids", "auxv", *stats, "chown=/f", *stats, env=mode_env))
    assert out.splitlines() == ["pointer=4", "ids: uid=0 euid=0 gid=0 egid=0", "auxv: uid=0 euid=0 gid=0 egid=0",
                                *_stat_lines("/f", 0, 0, 6), "chown /f: ok", *_stat_lines("/f", 1234, 5678, 6)]
    out = ok(proot("-i", "70000:42", "-r", root, "/prog", "ids", "ids16", env=mode_env))
    assert out.splitlines()[1:] == ["ids: uid=70000 euid=70000 gid=42 egid=42",
                                    "ids16: uid=65534 euid=65534 gid=42 egid=42"]
    # the dynamic program, under -r / (the host's ld-linux.so.2 and i386 libc)
    shutil.copy2(progs32 / "prog32", root / "dyn")
    out = ok(proot("-0", "-r", "/", "-b", f"{root}:/x", "/x/dyn", "ids", "stat64=/x/dyn", env=mode_env))
    assert out.splitlines()[1:] == ["ids: uid=0 euid=0 gid=0 egid=0",
                                    f"stat64 /x/dyn: mode=100755 uid=0 gid=0 size={(root / 'dyn').stat().st_size}"
                                    " nlink=1 ino=ok"]


BUSYBOX_SCRIPT = """cd /tmp && mkdir -p a/b && echo hello > a/b/f && cat a/b/f | tr a-z A-Z
ln -s b a/l && readlink a/l && ls a/l/ && find / -xdev -name f
uname -m; /bin/busybox arch
sh -c 'echo $0 in a child' child; pwd; cd a/l && pwd && cd / && rm -r /tmp/a && ls /tmp"""


def test_busybox_i386_tree(busybox_i386_rootfs: Path, mode_env: dict) -> None:
    """Debian's busybox-static:i386 as the whole guest: shell, pipes, fork and exec of
    32-bit programs, paths; uname's machine is i686 for it, as under PRoot."""
    out = ok(proot("-r", busybox_i386_rootfs, "-w", "/", "/bin/sh", "-c", BUSYBOX_SCRIPT, env=mode_env))
    assert out.splitlines() == ["HELLO", "b", "f", "/tmp/a/b/f", "i686", "i686", "child in a child", "/tmp",
                                "/tmp/a/l"]
    out = ok(proot("-r", "/", "/bin/sh", "-c", f"uname -m; {busybox_i386_rootfs}/bin/busybox uname -m; uname -m",
                   env=mode_env))
    assert out.splitlines() == ["x86_64", "i686", "x86_64"]  # per program, as under PRoot
