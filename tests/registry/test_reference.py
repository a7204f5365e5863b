"""Reference parsing against docker's normalisation rules, and registry settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ocirun.errors import OcirunError
from registry.config import RegistryConfig, is_loopback
from registry.reference import ArchiveReference, Reference, parse_reference

D = "sha256:" + "ab" * 32

# text -> (registry, repository, tag, digest)
CASES = {
    "debian": ("docker.io", "library/debian", "latest", None),
    "debian:12": ("docker.io", "library/debian", "12", None),
    "library/debian:12": ("docker.io", "library/debian", "12", None),
    "docker.io/debian": ("docker.io", "library/debian", "latest", None),
    "index.docker.io/library/debian": ("docker.io", "library/debian", "latest", None),
    "user/app:v1.2": ("docker.io", "user/app", "v1.2", None),
    "quay.io/org/app": ("quay.io", "org/app", "latest", None),
    "localhost/app": ("localhost", "app", "latest", None),
    "localhost:5000/a/b/c:tag": ("localhost:5000", "a/b/c", "tag", None),
    "127.0.0.1:5000/bb:1": ("127.0.0.1:5000", "bb", "1", None),
    "[::1]:5000/bb:1": ("[::1]:5000", "bb", "1", None),
    f"debian@{D}": ("docker.io", "library/debian", None, D),
    f"debian:12@{D}": ("docker.io", "library/debian", "12", D),
    f"reg.example:443/x/y@{D}": ("reg.example:443", "x/y", None, D),
    "a_b-c__d/f---g.h:T_1.x-y": ("docker.io", "a_b-c__d/f---g.h", "T_1.x-y", None),
}

BAD = [
    "",
    "Debian",  # uppercase repository
    "docker.io/Library/debian",
    "debian:",
    "debian:bad/tag",
    "debian@sha256:abc",
    "debian@md5:" + "0" * 32 + "z!",
    "-debian",
    "debian-",
    "a//b",
    "debian:" + "x" * 129,
    "reg.example/" + "a" * 260,
]


@pytest.mark.parametrize("text", sorted(CASES))
def test_parse_like_docker(text: str) -> None:
    ref = parse_reference(text, RegistryConfig())
    assert isinstance(ref, Reference)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == CASES[text]


@pytest.mark.parametrize("text", BAD)
def test_bad_references_are_one_line_errors(text: str) -> None:
    with pytest.raises(OcirunError) as exc:
        parse_reference(text, RegistryConfig())
    assert "invalid reference format" in exc.value.message and "\n" not in exc.value.message


def test_uppercase_first_component_is_a_registry() -> None:
    # docker: an uppercase first component cannot be a repository path, so it is a domain
    ref = parse_reference("MyReg/app", RegistryConfig())
    assert (ref.registry, ref.repository) == ("MyReg", "app")


def test_strings_and_ref() -> None:
    ref = parse_reference(f"debian:12@{D}", RegistryConfig())
    assert str(ref) == f"docker.io/library/debian:12@{D}"
    assert ref.familiar == f"debian:12@{D}"
    assert ref.ref == D  # the digest wins
    assert parse_reference("debian", RegistryConfig()).ref == "latest"
    assert parse_reference("127.0.0.1:5000/x:1", RegistryConfig()).familiar == "127.0.0.1:5000/x:1"


def test_archive_transports(tmp_path: Path) -> None:
    assert parse_reference("docker-archive:/x/img.tar") == ArchiveReference("docker-archive", "/x/img.tar")
    assert parse_reference("oci:/x/layout:v1") == ArchiveReference("oci", "/x/layout", "v1")
    assert parse_reference("oci:/x/layout") == ArchiveReference("oci", "/x/layout", None)
    assert parse_reference("oci-archive:/x/l.tar:latest") == ArchiveReference("oci-archive", "/x/l.tar", "latest")
    # an existing path that contains ':' is taken whole
    odd = tmp_path / "a:b"
    odd.mkdir()
    assert parse_reference(f"oci:{odd}") == ArchiveReference("oci", str(odd), None)


def test_default_registry_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OCIRUN_DEFAULT_REGISTRY", "http://127.0.0.1:5999/")
    ref = parse_reference("debian:12")
    assert (ref.registry, ref.repository) == ("127.0.0.1:5999", "library/debian")
    # fully qualified names are not redirected
    assert parse_reference("docker.io/debian").registry == "docker.io"
    assert parse_reference("quay.io/a/b").registry == "quay.io"


def test_config_file_and_env_override(isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg_file = isolated_env / ".config/ocirun/config.json"
    cfg_file.parent.mkdir(parents=True)
    cfg_file.write_text(json.dumps({
        "default-registry": "reg.example:5000",
        "registry-mirrors": ["https://mirror.example", "127.0.0.1:7000"],
        "insecure-registries": ["lab.example:5000"],
    }))
    cfg = RegistryConfig.load()
    assert parse_reference("alpine", cfg).name == "reg.example:5000/library/alpine"
    assert cfg.endpoints("docker.io") == ["https://mirror.example", "http://127.0.0.1:7000", "https://registry-1.docker.io"]
    assert cfg.endpoints("quay.io") == ["https://quay.io"]
    assert cfg.base_url("lab.example:5000") == "http://lab.example:5000"
    monkeypatch.setenv("OCIRUN_DEFAULT_REGISTRY", "docker.io")
    monkeypatch.setenv("OCIRUN_REGISTRY_MIRROR", "")
    assert RegistryConfig.load().default_registry == "docker.io"
    assert RegistryConfig.load().mirrors == []


def test_plain_http_only_for_loopback_and_insecure() -> None:
    cfg = RegistryConfig(insecure=["lab.example"])
    assert cfg.base_url("docker.io") == "https://registry-1.docker.io"
    assert cfg.base_url("quay.io") == "https://quay.io"
    assert cfg.base_url("localhost:5000") == "http://localhost:5000"
    assert cfg.base_url("127.3.4.5:80") == "http://127.3.4.5:80"
    assert cfg.base_url("[::1]:5000") == "http://[::1]:5000"
    assert cfg.base_url("lab.example:8080") == "http://lab.example:8080"
    assert cfg.base_url("128.0.0.1:5000") == "https://128.0.0.1:5000"
    assert not is_loopback("localhost.example.com")
