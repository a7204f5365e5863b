"""-k: uname and the /proc files that tell the kernel release."""

from __future__ import annotations

import os

from tests.extensions.guest import sh


def test_uname_release(debian_rootfs):
    out = sh(debian_rootfs, "uname -r; cat /proc/sys/kernel/osrelease; uname -s; head -c 25 /proc/version; echo",
             "-k", "3.2.0-fake").stdout.splitlines()
    assert out == ["3.2.0-fake", "3.2.0-fake", "Linux", "Linux version 3.2.0-fake "]


def test_long_form(debian_rootfs):
    out = sh(debian_rootfs, "uname -n; uname -r; uname -v; uname -m",
             "-k", "\\Linux\\oldbox\\2.6.32\\#1 SMP old\\i686\\\\-1\\").stdout.splitlines()
    assert out == ["oldbox", "2.6.32", "#1 SMP old", "i686"]


def test_without_k_the_real_release(debian_rootfs):
    assert sh(debian_rootfs, "uname -r").stdout.strip() == os.uname().release
