"""Bad input to `ocirun run` gets one clear line, exit 125, and loses nothing (QA sweep)."""

from __future__ import annotations

import pytest

from ocirun.errors import OcirunError
from ocirun.run.options import RawRunArgs, build_options, parse_stop_signal, parse_volume
from ocirun.run.runner import prepare_host_paths
from tests.helpers import assert_one_line_error


def test_volume_creates_missing_host_dir_mount_refuses(tmp_path) -> None:
    missing = tmp_path / "made" / "by-v"
    prepare_host_paths([parse_volume(f"{missing}:/data")])
    assert missing.is_dir()
    opts = build_options(RawRunArgs(image="x", mount=(f"type=bind,src={tmp_path / 'nope'},dst=/d",)))
    with pytest.raises(OcirunError) as exc:
        prepare_host_paths(opts.volumes)
    assert exc.value.exit_code == 125 and "does not exist" in exc.value.message
    assert not (tmp_path / "nope").exists()


@pytest.mark.parametrize(("text", "want"), [("TERM", "SIGTERM"), ("sigint", "SIGINT"), ("9", "9"), ("SIGUSR1", "SIGUSR1")])
def test_stop_signal_forms(text: str, want: str) -> None:
    assert parse_stop_signal(text) == want


@pytest.mark.parametrize("text", ["FOO", "SIGFOO", "0", "999", "SIG_DFL"])
def test_bad_stop_signal_is_125(text: str) -> None:
    with pytest.raises(OcirunError) as exc:
        build_options(RawRunArgs(image="x", stop_signal=text))
    assert exc.value.exit_code == 125


def test_missing_host_dir_of_v_is_created_in_the_guest_view(oc, tmp_path) -> None:
    host = tmp_path / "new" / "dir"
    cp = oc("run", "--rm", "-v", f"{host}:/data", oc.images.busybox, "sh", "-c", "echo hi > /data/f")
    assert cp.returncode == 0, cp.stderr
    assert (host / "f").read_text() == "hi\n"


def test_mount_of_missing_source_is_one_line(oc, tmp_path) -> None:
    cp = oc("run", "--rm", "--mount", f"type=bind,src={tmp_path / 'absent'},dst=/d", oc.images.busybox, "true")
    assert "bind source path does not exist" in assert_one_line_error(cp, 125)


@pytest.mark.parametrize("ref", ["a::b", "", "UPPER/Case:1"])
def test_bad_reference_is_one_line_before_any_lookup(oc, ref: str) -> None:
    line = assert_one_line_error(oc("run", "--rm", ref, "true"), 125)
    assert "invalid reference format" in line


@pytest.mark.parametrize("args", [["ps"], ["ps", "-a"], ["container", "prune", "-f"], ["logs", "x"]])
def test_store_root_that_is_a_file_is_one_line(tmp_path, args: list[str]) -> None:
    from tests.helpers import run_ocirun

    root = tmp_path / "a-file"
    root.write_text("mine\n")
    cp = run_ocirun("--root", root, *args)
    assert "not a directory" in assert_one_line_error(cp, 125)
    assert root.read_text() == "mine\n"


def test_os_error_in_the_store_is_one_plain_line(oc, tmp_path) -> None:
    """A store part ocirun cannot use (here `containers` is a file; for a user, a shared
    read-only store) names the path and the reason, not 'internal error: PermissionError'."""
    from tests.helpers import run_ocirun

    root = tmp_path / "store"
    root.mkdir()
    (root / "containers").write_text("not a directory\n")
    cp = run_ocirun("--root", root, "run", "--rm", oc.images.busybox, "true")
    assert cp.returncode == 125 and "Traceback" not in cp.stderr
    lines = [ln for ln in cp.stderr.splitlines() if not ln.startswith("Unable to find image")]  # docker's notice
    assert len(lines) == 1 and lines[0].startswith("ocirun: "), cp.stderr
    assert "internal error" not in lines[0] and str(root / "containers") in lines[0]
