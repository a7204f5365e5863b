"""TLS: verification on by default; loopback and listed-insecure registries may skip it or use HTTP."""

from __future__ import annotations

import ipaddress
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ocirun.errors import OcirunError
from registry.dirsink import DirectorySink
from registry.pull import pull_image
from tests.registry.regserver import Registry, push, start_registry


def _host_ip() -> str | None:
    """A non-loopback IPv4 address of this machine (to serve a registry docker would not trust)."""
    out = subprocess.run(["hostname", "-I"], capture_output=True, text=True).stdout.split()
    for word in out:
        try:
            ip = ipaddress.ip_address(word)
        except ValueError:
            continue
        if ip.version == 4 and not ip.is_loopback:
            return word
    return None


HOST_IP = _host_ip()
needs_ip = pytest.mark.skipif(HOST_IP is None, reason="this machine has no non-loopback IPv4 address")


def _serve(tmp: Path, layout: Path, *, tls: bool, ip: str) -> Registry:
    reg = start_registry(tmp, tls=tls, ip=ip)
    try:
        push(layout, reg, "library/busybox:single", tag="single")
    except BaseException:
        reg.stop()
        raise
    return reg


@pytest.fixture(scope="module")
def tls_loopback(tmp_path_factory: pytest.TempPathFactory, bb_layout: Path) -> Iterator[Registry]:
    reg = _serve(tmp_path_factory.mktemp("tls-lo"), bb_layout, tls=True, ip="127.0.0.1")
    yield reg
    reg.stop()


@pytest.fixture(scope="module")
def tls_remote(tmp_path_factory: pytest.TempPathFactory, bb_layout: Path) -> Iterator[Registry]:
    assert HOST_IP is not None
    reg = _serve(tmp_path_factory.mktemp("tls-ip"), bb_layout, tls=True, ip=HOST_IP)
    yield reg
    reg.stop()


@pytest.fixture(scope="module")
def http_remote(tmp_path_factory: pytest.TempPathFactory, bb_layout: Path) -> Iterator[Registry]:
    assert HOST_IP is not None
    reg = _serve(tmp_path_factory.mktemp("http-ip"), bb_layout, tls=False, ip=HOST_IP)
    yield reg
    reg.stop()


def test_loopback_registry_speaking_tls(tls_loopback: Registry, tmp_path: Path) -> None:
    """Like docker: HTTPS first (a loopback certificate is not checked), HTTP only as fallback."""
    img = pull_image(f"{tls_loopback.host}/library/busybox:single", None, DirectorySink(tmp_path), progress=False)
    assert str(img.platform) == "linux/amd64"


@needs_ip
def test_untrusted_certificate_is_refused(tls_remote: Registry, tmp_path: Path) -> None:
    with pytest.raises(OcirunError) as exc:
        pull_image(f"{tls_remote.host}/library/busybox:single", None, DirectorySink(tmp_path), progress=False)
    assert exc.value.message.startswith(f"cannot reach registry {tls_remote.host}: TLS verification failed")


@needs_ip
def test_trusted_ca_bundle_and_insecure_list(tls_remote: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls_remote.cert))
    pull_image(f"{tls_remote.host}/library/busybox:single", None, DirectorySink(tmp_path / "a"), progress=False)
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    monkeypatch.setenv("OCIRUN_INSECURE_REGISTRIES", tls_remote.host)
    pull_image(f"{tls_remote.host}/library/busybox:single", None, DirectorySink(tmp_path / "b"), progress=False)


@needs_ip
def test_plain_http_only_when_listed_insecure(http_remote: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(OcirunError, match=f"^cannot reach registry {http_remote.host}: TLS handshake failed"):
        pull_image(f"{http_remote.host}/library/busybox:single", None, DirectorySink(tmp_path / "a"), progress=False)
    monkeypatch.setenv("OCIRUN_INSECURE_REGISTRIES", HOST_IP or "")  # host without port also matches
    img = pull_image(f"{http_remote.host}/library/busybox:single", None, DirectorySink(tmp_path / "b"), progress=False)
    assert img.tag == "single"
