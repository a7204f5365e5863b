"""uname rewriting for -k, against the kernel's own struct utsname."""

from __future__ import annotations

import ctypes
import os

import pytest

from ocirun.engine.extensions.utsname import UTSNAME_SIZE, FakeUname, parse_utsname


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


def test_long_form_with_empty_fields():
    fake = FakeUname.parse("\\Linux\\box\\5.10.0\\#1 SMP\\\\\\")
    u = parse_utsname(fake.apply(kernel_uname()))
    assert (u["nodename"], u["release"], u["version"]) == ("box", "5.10.0", "#1 SMP")
    assert u["machine"] == os.uname().machine


def test_longer_value_overwrites_whole_field():
    raw = kernel_uname()
    out = FakeUname.parse("9").apply(raw)
    assert parse_utsname(out)["release"] == "9"
    assert len(out) == len(raw)


def test_bad_values():
    for bad in ["", "x" * 65, "\\a\\b\\c\\d\\e\\f\\g\\"]:
        with pytest.raises(ValueError):
            FakeUname.parse(bad)
