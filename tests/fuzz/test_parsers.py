"""Bad input, fuzzed: every parser of user or registry input either succeeds or raises
OcirunError with a one-line message; nothing else escapes (no traceback in the CLI)."""

from __future__ import annotations

import json

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st

from ocirun.errors import OcirunError

# Text that looks like what each parser expects, with the characters that matter.
REF_ALPHABET = st.sampled_from(list("abcAB019:/@._-+ ") + ["sha256:", "localhost", "127.0.0.1:5000", "docker.io", "\x00", "é"])
ref_text = st.lists(REF_ALPHABET, max_size=30).map("".join) | st.text(max_size=40)
OPT_ALPHABET = st.sampled_from(list("/:=,.-_ab0129") + ["ro", "rw", "tcp", "udp", "type=", "bind", "src=", "source=", "dst=",
                                                        "target=", "readonly", "127.0.0.1", "::", "[", "]", "\\", "\n"])
opt_text = st.lists(OPT_ALPHABET, max_size=20).map("".join) | st.text(max_size=30)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2, 2**40) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)


def _one_line(exc: OcirunError) -> None:
    assert exc.message and "\n" not in exc.message, repr(exc.message)


def _only_ocirun_errors(fn, *args) -> None:
    try:
        fn(*args)
    except OcirunError as exc:
        _one_line(exc)


@given(ref_text)
def test_image_references(text):
    from registry.reference import parse_image_reference, parse_reference

    _only_ocirun_errors(parse_reference, text)
    try:
        ref = parse_image_reference(text)
    except OcirunError as exc:
        _one_line(exc)
        return
    assert parse_image_reference(str(ref)) == ref  # what it prints parses back the same


@given(ref_text)
def test_platforms(text):
    from ocirun.run.options import parse_platform
    from registry.platform import Platform

    _only_ocirun_errors(Platform.parse, text)
    _only_ocirun_errors(parse_platform, text)


@pytest.mark.parametrize("parser", ["parse_volume", "parse_mount", "parse_publish", "parse_add_host", "parse_dns",
                                    "parse_user", "parse_stop_signal", "parse_name", "parse_pull"])
@given(text=opt_text)
def test_run_option_values(parser, text):
    from ocirun.run import options

    _only_ocirun_errors(getattr(options, parser), text)


@given(opt_text)
def test_env_values(text):
    from ocirun.run.options import parse_env_item

    _only_ocirun_errors(parse_env_item, text, {"HOME": "/root", "A": "1"})


@given(opt_text)
def test_kernel_release_values(text):
    """-k/--kernel-release: ValueError (a click usage error) or OcirunError, nothing else."""
    from ocirun.engine.extensions.shared.utsname import FakeUname

    try:
        FakeUname.parse(text)
    except (ValueError, OcirunError):
        pass


def _manifest_like() -> st.SearchStrategy:
    desc = st.fixed_dictionaries(
        {"mediaType": st.sampled_from(["application/vnd.oci.image.layer.v1.tar+gzip", "x", ""]),
         "digest": st.sampled_from(["sha256:" + "a" * 64, "sha256:xyz", "md5:00", "", "sha512:" + "b" * 128]),
         "size": st.integers(-5, 2**63) | st.text(max_size=3)},
        optional={"platform": json_values, "annotations": json_values, "urls": json_values},
    )
    return st.fixed_dictionaries(
        {"schemaVersion": st.sampled_from([2, 1, "2", None])},
        optional={"mediaType": st.sampled_from(["application/vnd.oci.image.manifest.v1+json",
                                                "application/vnd.oci.image.index.v1+json",
                                                "application/vnd.docker.distribution.manifest.v1+json", "x/y"]),
                  "config": desc | json_values, "layers": st.lists(desc | json_values, max_size=3) | json_values,
                  "manifests": st.lists(desc | json_values, max_size=3) | json_values},
    )


@given(st.one_of(_manifest_like().map(lambda d: json.dumps(d).encode()), json_values.map(lambda d: json.dumps(d).encode()),
                 st.binary(max_size=60)), st.sampled_from(["", "application/json", "application/vnd.oci.image.index.v1+json; x=y"]))
def test_manifests_and_indexes(data, content_type):
    from registry.client import manifest_media_type
    from registry.types import iter_layers, parse_manifest

    try:
        manifest_media_type(data, content_type, "test:1")
        obj = parse_manifest(data, "manifest")
        list(iter_layers(obj))
    except OcirunError as exc:
        _one_line(exc)


def _response(status: int, body: bytes, headers: dict[str, str]) -> requests.Response:
    resp = requests.Response()
    resp.status_code, resp._content, resp.encoding = status, body, "utf-8"
    resp.headers.update(headers)
    return resp


header_text = st.lists(st.sampled_from(['Bearer ', 'Basic ', 'realm=', 'service=', 'scope=', '"', ',', ' ', '=',
                                        'https://a/b', 'x', 'repository:a:pull', '\\', 'error="invalid_token"']),
                       max_size=20).map("".join) | st.text(max_size=40)


@given(header_text, st.one_of(json_values.map(lambda d: json.dumps({"errors": d}).encode()),
                              json_values.map(lambda d: json.dumps(d).encode()), st.binary(max_size=40)))
def test_registry_error_bodies_and_auth_challenges(challenge, body):
    from registry.auth import parse_challenge
    from registry.client import _error_code, registry_message

    _only_ocirun_errors(parse_challenge, challenge)
    resp = _response(401, body, {"WWW-Authenticate": challenge})
    assert isinstance(registry_message(resp), str)
    assert isinstance(_error_code(resp), str)


@given(st.lists(st.sampled_from(["FROM ", "RUN ", "COPY ", "ARG ", "ENV ", "CMD ", "LABEL ", "WORKDIR ", "USER ", "ONBUILD ",
                                 "# escape=`\n", "# syntax=x\n", "\\\n", "`\n", "[", "]", '"', "$", "${", "}", ":-", "a", "=",
                                 " ", "\n", "--from=", "--platform=", "AS b", "<<EOF\n", "EOF\n"]),
                max_size=30).map("".join) | st.text(max_size=80))
def test_dockerfile_parser(text):
    from ocirun.build import dockerfile

    try:
        parsed = dockerfile.parse(text)
    except OcirunError as exc:
        _one_line(exc)
        return
    env = {"a": "x y", "b": ""}
    for inst in parsed.instructions:  # the builder expands every instruction's words
        _only_ocirun_errors(dockerfile.expand_words, inst.rest, env, parsed.escape)
