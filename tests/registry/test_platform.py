"""Platform parsing, normalisation and selection."""

from __future__ import annotations

import pytest

from ocirun.errors import OcirunError
from registry.manifest import choose_manifest
from registry.platform import Platform, host_platform, select

P = Platform

PARSE = {
    "linux/arm64/v8": P("linux", "arm64", "v8"),
    "linux/arm64": P("linux", "arm64", "v8"),
    "arm64": P("linux", "arm64", "v8"),
    "aarch64": P("linux", "arm64", "v8"),
    "arm64/8": P("linux", "arm64", "v8"),
    "arm/v7": P("linux", "arm", "v7"),
    "armv7l": P("linux", "arm", "v7"),
    "armhf": P("linux", "arm", "v7"),
    "linux/arm": P("linux", "arm", "v7"),
    "linux/arm/v6": P("linux", "arm", "v6"),
    "x86_64": P("linux", "amd64", None),
    "linux/amd64": P("linux", "amd64", None),
    "amd64/v1": P("linux", "amd64", None),
    "amd64/v3": P("linux", "amd64", "v3"),
    "i686": P("linux", "386", None),
    "i386": P("linux", "386", None),
    "ppc64el": P("linux", "ppc64le", None),
    "LINUX/AMD64": P("linux", "amd64", None),
}


@pytest.mark.parametrize("text", sorted(PARSE))
def test_parse(text: str) -> None:
    assert Platform.parse(text) == PARSE[text]


@pytest.mark.parametrize("text", ["", "/", "linux//x", "a/b/c/d", "plan9/amd64/v1"])
def test_parse_errors(text: str) -> None:
    with pytest.raises(OcirunError):
        Platform.parse(text)


def test_str_and_json() -> None:
    assert str(Platform.parse("aarch64")) == "linux/arm64/v8"
    assert Platform.from_json({"architecture": "arm64", "os": "linux"}).to_json() == {"os": "linux", "architecture": "arm64", "variant": "v8"}


def test_host_platform(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OCIRUN_HOST_ARCH", "armv7l")
    assert host_platform() == P("linux", "arm", "v7")
    monkeypatch.delenv("OCIRUN_HOST_ARCH")
    assert host_platform().os == "linux" and host_platform().architecture in ("amd64", "arm64", "386", "arm", "ppc64le", "s390x", "riscv64")


def _index(*plats: dict) -> dict:
    return {"manifests": [{"mediaType": "x", "digest": f"sha256:{i:064x}", "size": 1, "platform": p} for i, p in enumerate(plats)]}


def test_select_prefers_exact_then_compatible() -> None:
    cands = [(P.of("linux", "arm", "v6"), "v6"), (P.of("linux", "arm", "v7"), "v7"), (P.of("linux", "amd64"), "amd")]
    assert select(P.parse("arm/v7"), cands) == "v7"
    assert select(P.parse("arm/v8"), cands) == "v7"
    assert select(P.parse("arm/v6"), cands) == "v6"
    assert select(P.parse("arm/v5"), cands) is None
    assert select(P.parse("arm64"), cands) is None


def test_choose_from_index() -> None:
    idx = _index(
        {"os": "linux", "architecture": "amd64"},
        {"os": "linux", "architecture": "arm64", "variant": "v8"},
        {"os": "unknown", "architecture": "unknown"},  # attestation
    )
    assert choose_manifest(idx, P.parse("aarch64"), "x").digest.endswith("1")
    assert choose_manifest(idx, P.parse("linux/arm64/v8"), "x").digest.endswith("1")
    assert choose_manifest(idx, P.parse("x86_64"), "x").digest.endswith("0")
    # arm64 entries without a variant still match arm64/v8
    idx2 = _index({"os": "linux", "architecture": "arm64"})
    assert choose_manifest(idx2, P.parse("arm64/v8"), "x").digest.endswith("0")


def test_no_match_lists_available() -> None:
    idx = _index({"os": "linux", "architecture": "amd64"}, {"os": "linux", "architecture": "arm64"})
    with pytest.raises(OcirunError) as exc:
        choose_manifest(idx, P.parse("ppc64le"), "busybox:1")
    assert exc.value.message == "no image for platform linux/ppc64le in busybox:1; available: linux/amd64, linux/arm64/v8"


def test_32_bit_userland_on_64_bit_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    import registry.platform as rp

    monkeypatch.setattr(rp, "_machine", lambda: "aarch64")
    monkeypatch.setattr(rp, "_userland_bits", lambda: 32)
    assert host_platform() == P("linux", "arm", "v7")
    monkeypatch.setattr(rp, "_machine", lambda: "x86_64")
    assert host_platform() == P("linux", "386", None)
    monkeypatch.setattr(rp, "_userland_bits", lambda: 64)
    assert host_platform() == P("linux", "amd64", None)
