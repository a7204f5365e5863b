"""uname rewriting for -k, against the kernel's own struct utsname."""

from __future__ import annotations

import ctypes
import os

import pytest

from ocirun.engine.extensions.shared.utsname import _ORDER, UTS_FIELD, UTSNAME_SIZE, FakeUname


def parse_utsname(buf: bytes) -> dict[str, str]:
    """Decode a struct utsname."""
    return {
        name: buf[i * UTS_FIELD : (i + 1) * UTS_FIELD].split(b"\x00", 1)[0].decode()
        for i, name in enumerate(_ORDER)
    }


def kernel_uname() -> bytes:
    buf = ctypes.create_string_buffer(UTSNAME_SIZE)
    assert ctypes.CDLL(None).uname(buf) == 0
    return buf.raw


def test_parse_matches_os_uname():
    u = parse_utsname(kernel_uname())
    assert (u["sysname"], u["release"], u["machine"]) == (
        os.uname().sysname, os.uname().release, os.uname().machine)


def test_release_only():
    fake = FakeUname.parse("3.2.0-fake")
    u = parse_utsname(fake.apply(kernel_uname()))
    assert u["release"] == "3.2.0-fake"
    assert u["sysname"] == "Linux" and u["nodename"] == os.uname().nodename


def test_long_form_has_seven_fields_and_empty_means_empty():
    """PRoot's form: every field ended by a backslash, hwcap last (hex, -1 keeps the real one)."""
    fake = FakeUname.parse("\\Linux\\box\\5.10.0\\#1 SMP\\\\\\-1\\")
    u = parse_utsname(fake.apply(kernel_uname()))
    assert (u["nodename"], u["release"], u["version"]) == ("box", "5.10.0", "#1 SMP")
    assert u["machine"] == "" and u["domainname"] == "" and fake.hwcap is None
    assert FakeUname.parse("\\a\\b\\c\\d\\e\\f\\0x1234\\").hwcap == 0x1234


def test_values_longer_than_64_bytes_are_cut():
    assert FakeUname.parse("x" * 80).release == "x" * 64
    assert FakeUname.parse("\\a\\" + "n" * 70 + "\\c\\d\\e\\f\\0\\").nodename == "n" * 64


def test_longer_value_overwrites_whole_field():
    raw = kernel_uname()
    out = FakeUname.parse("9").apply(raw)
    assert parse_utsname(out)["release"] == "9"
    assert len(out) == len(raw)


def test_bad_values():
    for bad in ["", "\\a\\b\\c\\d\\e\\f\\g\\", "\\a\\b\\c\\d\\e\\f\\", "\\a\\b\\c\\"]:
        with pytest.raises(ValueError):
            FakeUname.parse(bad)
