"""Kernel-exact results under every extension: the same program prints the same thing
natively and under `ocirun proot` (plain, -0, -i), in both tracing modes."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.engine.conftest import ok, proot

PYTHON = "/usr/bin/python3"

# errno of each fd-taking call on closed (99), invalid (-1) and huge fds, and with a bad dirfd
FD_PROBE = r"""
import ctypes, errno, os
libc = ctypes.CDLL(None, use_errno=True)
def e(f):
    try:
        f()
        return "ok"
    except OSError as x:
        return errno.errorcode[x.errno]
def c(r):
    return "ok" if r == 0 else errno.errorcode.get(ctypes.get_errno())
buf = ctypes.create_string_buffer(512)
for fd in (99, -1, 1000000):
    print(fd, e(lambda: os.fstat(fd)), e(lambda: os.fchmod(fd, 0o644)), e(lambda: os.fchown(fd, -1, -1)),
          c(libc.fstatat(fd, b"", buf, 0x1000)), c(libc.fchmodat(fd, b"x", 0o644, 0)),
          c(libc.fchownat(fd, b"x", -1, -1, 0)), c(libc.fchownat(fd, b"", -1, -1, 0x1000)),
          c(libc.statx(fd, b"", 0x1000, 0x7ff, buf)))
print("fdopen", libc.fdopen(99, b"r") == None, errno.errorcode.get(ctypes.get_errno()))
"""

# subprocess with pass_fds probes every fd up to the limit; posix_spawn with close actions
SPAWN_PROBE = r"""
import os, subprocess
r, w = os.pipe()
print("pass_fds", subprocess.run(["/bin/true"], pass_fds=(w,), timeout=60).returncode)
pid = os.posix_spawn("/bin/true", ["true"], os.environ,
                     file_actions=[(os.POSIX_SPAWN_CLOSE, 99), (os.POSIX_SPAWN_CLOSE, w)])
print("posix_spawn", os.waitpid(pid, 0)[1])
"""

# getsockname/getpeername of AF_UNIX (path in a binding) and inet sockets from a second thread
THREAD_PROBE = r"""
import socket, sys, tempfile, threading
d = tempfile.mkdtemp(dir=sys.argv[1])
s = socket.socket(socket.AF_UNIX); s.bind(d + "/s"); s.listen()
c = socket.socket(socket.AF_UNIX); c.connect(d + "/s"); a, _ = s.accept()
t = socket.socket(); t.bind(("127.0.0.1", 0)); t.listen()
u = socket.socket(); u.connect(t.getsockname())
out = []
def probe():
    for call in (s.getsockname, c.getpeername, a.getsockname):
        try:
            out.append(call() == d + "/s")
        except OSError as exc:
            out.append(exc.strerror)
    for call in (t.getsockname, u.getpeername):
        try:
            out.append(call()[0])
        except OSError as exc:
            out.append(exc.strerror)
th = threading.Thread(target=probe); th.start(); th.join()
print(out)
"""

EXTENSIONS = [(), ("-0",), ("-i", "1234:1234")]


def _native(script: str, *args: str) -> str:
    cp = subprocess.run([PYTHON, "-c", script, *args], capture_output=True, text=True, timeout=120,
                        stdin=subprocess.DEVNULL)
    assert cp.returncode == 0, cp.stderr
    return cp.stdout


@pytest.fixture(scope="module")
def python() -> str:
    if not os.access(PYTHON, os.X_OK):
        pytest.fail(f"{PYTHON} is missing (Debian's python3)", pytrace=False)
    return PYTHON


@pytest.mark.parametrize("ext", EXTENSIONS, ids=["plain", "root", "ids"])
def test_bad_fds_give_ebadf_as_the_kernel(python: str, ext: tuple[str, ...], mode_env) -> None:
    expected = _native(FD_PROBE)
    assert "EBADF" in expected
    assert ok(proot(*ext, python, "-c", FD_PROBE, env=mode_env)) == expected


@pytest.mark.parametrize("ext", EXTENSIONS, ids=["plain", "root", "ids"])
def test_pass_fds_and_posix_spawn(python: str, ext: tuple[str, ...], mode_env) -> None:
    assert ok(proot(*ext, python, "-c", SPAWN_PROBE, env=mode_env, timeout=90)) == "pass_fds 0\nposix_spawn 0\n"


@pytest.mark.parametrize("ext", [(), ("-0",), ("-n",)], ids=["plain", "root", "netcoop"])
def test_socket_names_from_another_thread(python: str, tmp_path: Path, ext: tuple[str, ...], mode_env) -> None:
    os.chmod(tmp_path, 0o777)
    out = ok(proot(*ext, "-b", f"{tmp_path}:/mnt", python, "-c", THREAD_PROBE, "/mnt", env=mode_env))
    assert out == "[True, True, True, '127.0.0.1', '127.0.0.1']\n"


# fexecve of a memfd (no name on disk): by its /proc/self/fd link and by execveat(AT_EMPTY_PATH)
MEMFD_EXEC = r"""
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
for how in ("execve", "execveat"):
    for data in (b"#!/bin/sh\necho script $1\n", open("/bin/echo", "rb").read()):
        m = os.memfd_create("prog", 0)
        os.write(m, data)
        pid = os.fork()
        if pid == 0:
            if how == "execve":
                os.execv(f"/proc/self/fd/{m}", ["prog", how])
            libc.execveat(m, b"", (ctypes.c_char_p * 3)(b"prog", how.encode(), None),
                          (ctypes.c_char_p * 1)(None), 0x1000)
            print("failed", ctypes.get_errno(), flush=True)
            os._exit(1)
        print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), flush=True)
        os.close(m)
"""


@pytest.mark.parametrize("ext", [(), ("-0",)], ids=["plain", "root"])
def test_exec_of_a_memfd(python: str, ext: tuple[str, ...], mode_env) -> None:
    expected = _native(MEMFD_EXEC)
    assert expected == "script execve\n0\nexecve\n0\nscript execveat\n0\nexecveat\n0\n"
    assert ok(proot(*ext, python, "-c", MEMFD_EXEC, env=mode_env)) == expected  # PRoot: execveat fails


# execveat through close-on-exec fds (Python's default): a script by a relative or empty name
# fails ENOENT (its interpreter could not open it), an ELF runs, an absolute name is unaffected
CLOEXEC_EXECVEAT = r"""
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
d = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY)
for name, path, flags in (("s", b"s", 0), ("s", b"", 0x1000), ("s", sys.argv[1].encode() + b"/s", 0),
                          ("true", b"true", 0)):
    fd = os.open(f"{sys.argv[1]}/{name}", os.O_RDONLY) if not path else d
    pid = os.fork()
    if pid == 0:
        libc.execveat(fd, path, (ctypes.c_char_p * 2)(b"x", None), (ctypes.c_char_p * 1)(None), flags)
        print("failed", ctypes.get_errno(), flush=True)
        os._exit(1)
    print(name, os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), flush=True)
"""


@pytest.mark.parametrize("ext", [(), ("-0",)], ids=["plain", "root"])
def test_execveat_of_a_script_through_a_cloexec_fd(python: str, tmp_path: Path, ext: tuple[str, ...],
                                                    mode_env) -> None:
    os.chmod(tmp_path, 0o755)
    (tmp_path / "s").write_text("#!/bin/sh\necho script\n")
    (tmp_path / "s").chmod(0o755)
    (tmp_path / "true").write_bytes(Path("/bin/true").read_bytes())
    (tmp_path / "true").chmod(0o755)
    expected = _native(CLOEXEC_EXECVEAT, str(tmp_path))
    assert expected == "failed 2\ns 1\nfailed 2\ns 1\nscript\ns 0\ntrue 0\n"
    assert ok(proot(*ext, python, "-c", CLOEXEC_EXECVEAT, str(tmp_path), env=mode_env)) == expected
