"""Docker's run options parsed into RunOptions: every option, good and bad values."""

from __future__ import annotations

import pytest

from ocirun.errors import OcirunError
from ocirun.run.options import (
    Publish,
    RawRunArgs,
    Volume,
    build_options,
    ignored_warnings,
    parse_add_host,
    parse_mount,
    parse_platform,
    parse_publish,
    parse_volume,
)


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("arm64", "linux/arm64"),
        ("linux/arm64", "linux/arm64"),
        ("linux/arm64/v8", "linux/arm64"),
        ("aarch64", "linux/arm64"),
        ("amd64", "linux/amd64"),
        ("x86_64", "linux/amd64"),
        ("linux/amd64", "linux/amd64"),
        ("arm/v7", "linux/arm/v7"),
        ("linux/arm/v7", "linux/arm/v7"),
        ("armhf", "linux/arm/v7"),
        ("LINUX/ARM64", "linux/arm64"),
    ],
)
def test_platform_forms(text: str, want: str) -> None:
    assert parse_platform(text) == want


@pytest.mark.parametrize("text", ["", "windows/amd64", "linux/", "linux/m68k", "a/b/c/d"])
def test_bad_platform_is_125(text: str) -> None:
    with pytest.raises(OcirunError) as exc:
        parse_platform(text)
    assert exc.value.exit_code == 125


def test_volume_forms(tmp_path) -> None:
    assert parse_volume(f"{tmp_path}:/data") == Volume(str(tmp_path), "/data", False)
    assert parse_volume(f"{tmp_path}:/data:ro") == Volume(str(tmp_path), "/data", True)
    assert parse_volume(f"{tmp_path}:/data/:rw") == Volume(str(tmp_path), "/data", False)
    rel = parse_volume("./x:/x")
    assert rel.host.startswith("/") and rel.host.endswith("/x")


@pytest.mark.parametrize("spec", ["/a", "/a:rel", "/a:/b:rx", "/a:/b:ro,rw", "named:/b", ":/b", "/a:/b:ro:x"])
def test_bad_volume(spec: str) -> None:
    with pytest.raises(OcirunError) as exc:
        parse_volume(spec)
    assert exc.value.exit_code == 125


def test_mount_forms(tmp_path) -> None:
    assert parse_mount(f"type=bind,src={tmp_path},dst=/d") == Volume(str(tmp_path), "/d")
    assert parse_mount(f"type=bind,source={tmp_path},target=/d,readonly") == Volume(str(tmp_path), "/d", True)
    assert parse_mount(f"type=bind,src={tmp_path},destination=/d,readonly=false").readonly is False
    for bad in ["type=volume,src=x,dst=/d", f"type=bind,src={tmp_path}", f"type=bind,src={tmp_path},dst=/d,colour=red"]:
        with pytest.raises(OcirunError):
            parse_mount(bad)


def test_publish_forms() -> None:
    assert parse_publish("8080:80") == [Publish(80, 8080)]
    assert parse_publish("127.0.0.1:8080:80/udp") == [Publish(80, 8080, "127.0.0.1", "udp")]
    assert parse_publish("80") == [Publish(80, 0)]
    assert parse_publish("[::1]:8080:80") == [Publish(80, 8080, "::1")]
    assert parse_publish("8000-8001:80-81") == [Publish(80, 8000), Publish(81, 8001)]


@pytest.mark.parametrize("spec", ["x:80", "8080:99999", "1.2.3:8080:80", "80/icmp", "8000-8002:80-81", "a:b:c:d"])
def test_bad_publish(spec: str) -> None:
    with pytest.raises(OcirunError):
        parse_publish(spec)


def test_add_host() -> None:
    assert parse_add_host("db:10.0.0.2") == ("db", "10.0.0.2")
    assert parse_add_host("db=10.0.0.2") == ("db", "10.0.0.2")
    assert parse_add_host("v6:[::1]") == ("v6", "::1")
    assert parse_add_host("gw:host-gateway") == ("gw", "127.0.0.1")
    with pytest.raises(OcirunError):
        parse_add_host("db:notanip")


def test_env_and_env_file(tmp_path) -> None:
    env_file = tmp_path / "env"
    env_file.write_text("# comment\nA=from-file\nB=file\n\nFROMHOST\nMISSING\n")
    opts = build_options(
        RawRunArgs(image="img", env=("A=cli", "C", "D=x=y", "UNSET"), env_file=(str(env_file),)),
        host_env={"C": "host-c", "FROMHOST": "fh"},
    )
    assert opts.env == {"A": "cli", "B": "file", "FROMHOST": "fh", "C": "host-c", "D": "x=y"}


def test_build_options_everything(tmp_path) -> None:
    raw = RawRunArgs(
        image="debian:12",
        command=("sh", "-c", "true"),
        platform="arm64",
        pull="never",
        volume=(f"{tmp_path}:/v:ro",),
        mount=(f"type=bind,src={tmp_path},dst=/m",),
        publish=("8080:80",),
        publish_all=True,
        netcoop=True,
        workdir="/work",
        user="nobody:nogroup",
        entrypoint="",
        hostname="box",
        add_host=("a:1.2.3.4",),
        dns=("9.9.9.9",),
        kernel_release="6.0.0",
        rm=True,
        name="c1",
        detach=True,
        interactive=True,
        tty=True,
        ignored=[("--memory", "1g"), ("--memory", "2g"), ("--privileged", None), ("--network", "host"), ("--network", "none")],
    )
    o = build_options(raw, host_env={})
    assert o.platform == "linux/arm64" and o.pull == "never"
    assert o.volumes == [Volume(str(tmp_path), "/v", True), Volume(str(tmp_path), "/m", False)]
    assert o.publish == [Publish(80, 8080)] and o.publish_all and o.netcoop
    assert (o.workdir, o.user, o.entrypoint, o.hostname) == ("/work", "nobody:nogroup", "", "box")
    assert o.add_hosts == [("a", "1.2.3.4")] and o.dns == ["9.9.9.9"] and o.kernel_release == "6.0.0"
    assert o.rm and o.name == "c1" and o.detach and o.interactive and o.tty
    assert len(o.warnings) == 3  # --memory once, --privileged, --network none; host is fine
    assert any("--network none" in w for w in o.warnings)


@pytest.mark.parametrize(
    "raw",
    [
        RawRunArgs(image="i", pull="sometimes"),
        RawRunArgs(image="i", workdir="relative"),
        RawRunArgs(image="i", user="a:"),
        RawRunArgs(image="i", name="bad name"),
        RawRunArgs(image="i", dns=("dns.example",)),
        RawRunArgs(image="i", env=("=x",)),
        RawRunArgs(image="i", env_file=("/nonexistent/env",)),
    ],
)
def test_bad_values_are_125(raw: RawRunArgs) -> None:
    with pytest.raises(OcirunError) as exc:
        build_options(raw, host_env={})
    assert exc.value.exit_code == 125


def test_ignored_warnings_once_each() -> None:
    w = ignored_warnings([("--cpus", "2"), ("--cpus", "3"), ("--cap-add", "X"), ("--net", "bridge")])
    assert len(w) == 2 and w[0].startswith("--cpus")
