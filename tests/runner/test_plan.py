"""Image config + options -> RunPlan: docker's defaults and precedence rules."""

from __future__ import annotations

import os

import pytest

from ocirun.errors import OcirunError
from ocirun.run.options import Publish, RawRunArgs, build_options
from ocirun.run.plan import (
    DEFAULT_PATH,
    ImageDefaults,
    RunPlan,
    build_run_plan,
    command_argv,
    guest_file,
    hosts_file,
    resolv_conf,
    resolve_user,
)

CID = "abcdef0123456789" * 4


@pytest.fixture
def rootfs(tmp_path):
    """A tiny image tree with passwd/group, /etc as a symlink chain like some images."""
    root = tmp_path / "root"
    (root / "real-etc").mkdir(parents=True)
    (root / "etc").symlink_to("/real-etc")  # absolute: must resolve inside the root
    (root / "real-etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\n"
        "daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"
        "app:x:1000:1000:App:/home/app:/bin/sh\n"
    )
    (root / "real-etc" / "group").write_text("root:x:0:\nstaff:x:50:\napp:x:1000:\n")
    return root


def config(**inner):
    return {"architecture": "amd64", "os": "linux", "config": inner, "rootfs": {}}


def plan(rootfs, cfg=None, host_env=None, **raw) -> RunPlan:
    opts = build_options(RawRunArgs(image="img", **raw), host_env={})
    return build_run_plan(opts, cfg, rootfs, CID, host_env=host_env or {})


def test_guest_file_follows_symlinks_inside_root(rootfs) -> None:
    assert guest_file(rootfs, "/etc/passwd") == rootfs / "real-etc" / "passwd"
    (rootfs / "escape").symlink_to("../../../../../../etc")
    assert guest_file(rootfs, "/escape/passwd") == rootfs / "real-etc" / "passwd"
    assert guest_file(rootfs, "/nope") is None


def test_users(rootfs) -> None:
    assert resolve_user(rootfs, "app").__dict__ == {"uid": 1000, "gid": 1000, "home": "/home/app", "name": "app"}
    assert resolve_user(rootfs, "1000").home == "/home/app"
    assert resolve_user(rootfs, "app:staff").gid == 50
    assert resolve_user(rootfs, "daemon:7").gid == 7
    u = resolve_user(rootfs, "4242")
    assert (u.uid, u.gid, u.home) == (4242, 0, "/")
    for spec in ("nobody", "app:nogroup"):
        with pytest.raises(OcirunError) as exc:
            resolve_user(rootfs, spec)
        assert exc.value.exit_code == 125


def test_user_without_passwd(tmp_path) -> None:
    u = resolve_user(tmp_path, "0")
    assert (u.uid, u.gid, u.home) == (0, 0, "/root")


@pytest.mark.parametrize(
    ("entrypoint", "cmd", "command", "flag", "want"),
    [
        ([], ["sh"], [], None, ["sh"]),
        ([], ["sh"], ["ls", "-l"], None, ["ls", "-l"]),
        (["/ep"], ["a"], [], None, ["/ep", "a"]),
        (["/ep"], ["a"], ["b"], None, ["/ep", "b"]),
        (["/ep"], ["a"], [], "/other", ["/other"]),  # --entrypoint drops Cmd
        (["/ep"], ["a"], ["x"], "/other", ["/other", "x"]),
        (["/ep"], ["a"], ["ls"], "", ["ls"]),  # --entrypoint "" resets
    ],
)
def test_entrypoint_cmd(entrypoint, cmd, command, flag, want) -> None:
    d = ImageDefaults(entrypoint=entrypoint, cmd=cmd)
    assert command_argv(d, command, flag) == want


@pytest.mark.parametrize(("ep", "cmd", "flag"), [([], [], None), (["/ep"], ["a"], "")])
def test_no_command_is_125(ep, cmd, flag) -> None:
    with pytest.raises(OcirunError) as exc:
        command_argv(ImageDefaults(entrypoint=ep, cmd=cmd), [], flag)
    assert exc.value.exit_code == 125


def test_defaults_from_config(rootfs) -> None:
    cfg = config(
        Env=["PATH=/opt/bin:/bin", "LANG=C.UTF-8"],
        Cmd=["bash"],
        WorkingDir="/srv",
        User="app",
        StopSignal="SIGQUIT",
        ExposedPorts={"80/tcp": {}, "53/udp": {}},
    )
    p = plan(rootfs, cfg, host_env={"TERM": "xterm-256color", "SECRET": "leak", "HOME": "/root"})
    assert p.argv == ["bash"]
    assert p.env == {
        "PATH": "/opt/bin:/bin",
        "HOSTNAME": CID[:12],
        "LANG": "C.UTF-8",
        "TERM": "xterm-256color",
        "HOME": "/home/app",
    }
    assert (p.cwd, p.uid, p.gid, p.user, p.stop_signal) == ("/srv", 1000, 1000, "app", "SIGQUIT")
    assert p.hostname == CID[:12] and p.ports == []


def test_options_override_config(rootfs) -> None:
    cfg = config(Env=["A=image", "HOME=/imagehome"], Cmd=["bash"], WorkingDir="/srv", User="app")
    p = plan(rootfs, cfg, env=("A=cli",), workdir="/w", user="root", hostname="h", stop_signal="SIGINT")
    assert p.env["A"] == "cli" and p.env["HOME"] == "/imagehome" and p.env["HOSTNAME"] == "h"
    assert p.env["PATH"] == DEFAULT_PATH
    assert (p.cwd, p.uid, p.gid, p.hostname, p.stop_signal) == ("/w", 0, 0, "h", "SIGINT")


def test_default_user_is_root(rootfs) -> None:
    p = plan(rootfs, config(Cmd=["sh"]))
    assert (p.uid, p.gid, p.env["HOME"], p.cwd) == (0, 0, "/root", "/")


def test_publish_all_picks_free_ports(rootfs) -> None:
    cfg = config(Cmd=["sh"], ExposedPorts={"80/tcp": {}, "53/udp": {}, "8443": {}})
    p = plan(rootfs, cfg, publish=("8080:80",), publish_all=True)
    by_port = {(x.container_port, x.proto): x for x in p.ports}
    assert by_port[(80, "tcp")] == Publish(80, 8080)
    assert set(by_port) == {(80, "tcp"), (53, "udp"), (8443, "tcp")}
    assert all(0 < x.host_port < 65536 for x in p.ports)
    p2 = plan(rootfs, cfg, publish=("80",))
    assert len(p2.ports) == 1 and p2.ports[0].host_port > 0


def test_plan_json_roundtrip(rootfs) -> None:
    p = plan(rootfs, config(Cmd=["sh"]), publish=("1.2.3.4:8080:80/udp",), add_host=("a:1.1.1.1",), volume=(f"{rootfs}:/x:ro",))
    assert RunPlan.from_json(p.to_json()) == p


def test_etc_files(tmp_path) -> None:
    text = hosts_file("box", [("db", "10.0.0.2")])
    assert "127.0.0.1\tlocalhost" in text and "\tbox\n" in text and "10.0.0.2\tdb\n" in text
    assert resolv_conf(["9.9.9.9", "1.1.1.1"]) == "nameserver 9.9.9.9\nnameserver 1.1.1.1\n"
    host = tmp_path / "resolv"
    host.write_text("nameserver 10.1.1.1\n")
    assert resolv_conf([], str(host)) == "nameserver 10.1.1.1\n"
    assert os.path.exists("/etc/resolv.conf") or resolv_conf([], "/nonexistent")
