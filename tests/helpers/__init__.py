"""Helpers shared by every test area: running the CLI, checking its errors, fixture paths.

The CLI is run as ``sys.executable -m ocirun`` with this checkout first on PYTHONPATH,
so it works as root and as the unprivileged test user, whatever the venv's editable
install points at.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_FIXTURES = "/var/tmp/ocirun-fixtures"
DEFAULT_TIMEOUT = 120.0


def fixtures_root() -> Path:
    """The cached fixtures built by ``sudo scripts/fixtures`` (env OCIRUN_TEST_FIXTURES)."""
    return Path(os.environ.get("OCIRUN_TEST_FIXTURES") or DEFAULT_FIXTURES)


def ocirun_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a CLI run: the caller's, plus ``env``, with this checkout importable."""
    merged = dict(os.environ)
    if env:
        merged.update(env)
    parts = [str(REPO_ROOT)]
    if merged.get("PYTHONPATH"):
        parts.append(merged["PYTHONPATH"])
    merged["PYTHONPATH"] = os.pathsep.join(parts)
    return merged


def ocirun_argv(*args: str | os.PathLike[str]) -> list[str]:
    """The argv that runs the CLI of this checkout with the current interpreter."""
    return [sys.executable, "-m", "ocirun", *(os.fspath(a) for a in args)]


def run_ocirun(
    *args: str | os.PathLike[str],
    env: Mapping[str, str] | None = None,
    input: str | bytes | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    cwd: str | os.PathLike[str] | None = "/",
    text: bool = True,
) -> subprocess.CompletedProcess:
    """Run ``ocirun ARGS...`` and capture its output; never raises on a non-zero exit.

    It runs from ``cwd``, `/` by default: `ocirun proot` starts the guest in the caller's
    directory (with a warning when the guest has no such directory, as PRoot does).
    stdin is ``input`` or /dev/null (never the test runner's own stdin, which CI
    does not have). On a timeout the whole process group is killed, so a hung
    guest does not outlive the test.
    """
    if input is not None and not text and isinstance(input, str):
        input = input.encode()
    proc = subprocess.Popen(
        ocirun_argv(*args),
        env=ocirun_env(env),
        cwd=cwd,
        stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=text,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        out, err = proc.communicate()
        raise AssertionError(
            f"ocirun {' '.join(map(str, args))} timed out after {timeout}s\n"
            f"stdout: {out!r}\nstderr: {err!r}"
        ) from None
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, 9)
    except ProcessLookupError:
        pass


def assert_one_line_error(cp: subprocess.CompletedProcess, code: int | None = None) -> str:
    """Assert the CLI failed the ocirun way: exit ``code`` (any non-zero if None) and
    exactly one stderr line ``ocirun: ...``, no traceback. Returns that line."""
    err = cp.stderr if isinstance(cp.stderr, str) else cp.stderr.decode(errors="replace")
    detail = f"exit {cp.returncode}\nstdout: {cp.stdout!r}\nstderr: {err!r}"
    if code is None:
        assert cp.returncode != 0, f"expected a failure, got {detail}"
    else:
        assert cp.returncode == code, f"expected exit {code}, got {detail}"
    assert "Traceback" not in err, f"traceback on stderr: {detail}"
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}: {detail}"
    assert lines[0].startswith("ocirun: "), f"stderr does not start with 'ocirun: ': {detail}"
    return lines[0]


def is_root() -> bool:
    """True when the tests run as root (some checks only make sense without privilege)."""
    return os.geteuid() == 0


def sh(argv: Sequence[str | os.PathLike[str]], **kw) -> subprocess.CompletedProcess:
    """Run a host command with checked exit and captured text output (setup steps)."""
    kw.setdefault("stdin", subprocess.DEVNULL)
    return subprocess.run(
        [os.fspath(a) for a in argv], check=True, capture_output=True, text=True, **kw
    )
