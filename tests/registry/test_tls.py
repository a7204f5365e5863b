"""TLS: verification on by default; loopback and listed-insecure registries may skip it or use HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ocirun.errors import OcirunError
from registry.pull import pull_image
from tests.registry.dirsink import DirectorySink
from tests.registry.regserver import Registry, push, start_registry


@pytest.fixture
def strict_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    """127.0.0.1 follows the rules of a remote registry (OCIRUN_INSECURE_LOOPBACK=0):
    the tests reach only loopback addresses, never this machine's own interfaces."""
    monkeypatch.setenv("OCIRUN_INSECURE_LOOPBACK", "0")


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
def http_loopback(tmp_path_factory: pytest.TempPathFactory, bb_layout: Path) -> Iterator[Registry]:
    reg = _serve(tmp_path_factory.mktemp("http-lo"), bb_layout, tls=False, ip="127.0.0.1")
    yield reg
    reg.stop()


def test_loopback_registry_speaking_tls(tls_loopback: Registry, tmp_path: Path) -> None:
    """Like docker: HTTPS first (a loopback certificate is not checked), HTTP only as fallback."""
    img = pull_image(f"{tls_loopback.host}/library/busybox:single", None, DirectorySink(tmp_path), progress=False)
    assert str(img.platform) == "linux/amd64"


@pytest.mark.usefixtures("strict_loopback")
def test_untrusted_certificate_is_refused(tls_loopback: Registry, tmp_path: Path) -> None:
    with pytest.raises(OcirunError) as exc:
        pull_image(f"{tls_loopback.host}/library/busybox:single", None, DirectorySink(tmp_path), progress=False)
    assert exc.value.message.startswith(f"cannot reach registry {tls_loopback.host}: TLS verification failed")


@pytest.mark.usefixtures("strict_loopback")
def test_trusted_ca_bundle_and_insecure_list(tls_loopback: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls_loopback.cert))
    pull_image(f"{tls_loopback.host}/library/busybox:single", None, DirectorySink(tmp_path / "a"), progress=False)
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    monkeypatch.setenv("OCIRUN_INSECURE_REGISTRIES", tls_loopback.host)
    pull_image(f"{tls_loopback.host}/library/busybox:single", None, DirectorySink(tmp_path / "b"), progress=False)


@pytest.mark.usefixtures("strict_loopback")
def test_plain_http_only_when_listed_insecure(http_loopback: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(OcirunError, match=f"^cannot reach registry {http_loopback.host}: TLS handshake failed"):
        pull_image(f"{http_loopback.host}/library/busybox:single", None, DirectorySink(tmp_path / "a"), progress=False)
    monkeypatch.setenv("OCIRUN_INSECURE_REGISTRIES", "127.0.0.1")  # host without port also matches
    img = pull_image(f"{http_loopback.host}/library/busybox:single", None, DirectorySink(tmp_path / "b"), progress=False)
    assert img.tag == "single"


def test_loopback_exemption_by_config_file(http_loopback: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same switch in config.json; the environment wins over it."""
    cfg = tmp_path / "config.json"
    cfg.write_text('{"insecure-loopback": false}')
    monkeypatch.setenv("OCIRUN_CONFIG", str(cfg))
    ref = f"{http_loopback.host}/library/busybox:single"
    with pytest.raises(OcirunError, match="TLS handshake failed"):
        pull_image(ref, None, DirectorySink(tmp_path / "a"), progress=False)
    monkeypatch.setenv("OCIRUN_INSECURE_LOOPBACK", "1")
    assert pull_image(ref, None, DirectorySink(tmp_path / "b"), progress=False).tag == "single"
