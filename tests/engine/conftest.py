"""Fixtures of the engine tests: compiled C corner-case programs, a busybox tree
(session), and both tracing modes (seccomp, and the PTRACE_SYSCALL fallback)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import run_ocirun
from tests.helpers.trees import make_busybox_tree

CPROGS = Path(__file__).resolve().parents[1] / "cprogs"


def _compile(cc: list[str], src: Path, out: Path) -> None:
    proc = subprocess.run([*cc, "-O2", "-Wall", "-o", str(out), str(src), "-lpthread"],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        pytest.fail(f"compiling {src.name} with {cc[0]} failed:\n{proc.stderr}", pytrace=False)


@pytest.fixture(scope="session")
def cprogs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/cprogs/*.c built three ways into one directory (made world-readable):
    NAME (dynamic, host glibc = bookworm's), NAME.static, NAME.musl (musl-gcc)."""
    out = tmp_path_factory.mktemp("cprogs")
    os.chmod(out, 0o755)
    if shutil.which("musl-gcc") is None:
        pytest.fail("musl-gcc is missing: install musl-tools (scripts/deps/apt.txt)", pytrace=False)
    for src in sorted(CPROGS.glob("*.c")):
        _compile(["gcc"], src, out / src.stem)
        _compile(["gcc", "-static"], src, out / f"{src.stem}.static")
        if src.stem in ("selfexe", "vfork", "execerr"):
            _compile(["musl-gcc"], src, out / f"{src.stem}.musl")
    return out


@pytest.fixture(scope="session")
def bb_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A busybox-static tree shared by the read-only tests of the session."""
    return make_busybox_tree(tmp_path_factory.mktemp("bb") / "root")


@pytest.fixture
def bb_rw(tmp_path: Path) -> Path:
    """A private busybox tree a test may change."""
    return make_busybox_tree(tmp_path / "bbroot")


@pytest.fixture(params=["seccomp", "no-seccomp"])
def mode_env(request: pytest.FixtureRequest) -> dict[str, str]:
    """Run a test in both tracing modes."""
    return {"OCIRUN_NO_SECCOMP": "1" if request.param == "no-seccomp" else "0"}


def proot(*args, env: dict[str, str] | None = None, **kw) -> subprocess.CompletedProcess:
    """`ocirun proot ARGS...` from this checkout."""
    return run_ocirun("proot", *args, env=env, **kw)


def ok(cp: subprocess.CompletedProcess) -> str:
    assert cp.returncode == 0, f"exit {cp.returncode}\nstdout: {cp.stdout!r}\nstderr: {cp.stderr!r}"
    return cp.stdout
