"""GuestPathError: an OSError with the kernel's errno, naming the guest path only."""

from __future__ import annotations

import errno

from ocirun.engine.path import GuestPathError


def test_errno_and_message():
    exc = GuestPathError(errno.ENOTDIR, "/etc/passwd/x")
    assert isinstance(exc, OSError)
    assert exc.errno == errno.ENOTDIR
    assert exc.filename == "/etc/passwd/x"
    assert "Not a directory" in str(exc)
    bare = GuestPathError(errno.ENOEXEC)
    assert bare.errno == errno.ENOEXEC and bare.filename is None
    assert str(bare) == "[Errno 8] Exec format error"


def test_from_host_error_keeps_errno_not_host_path():
    host = PermissionError(errno.EACCES, "Permission denied", "/host/rootfs/secret")
    exc = GuestPathError.from_oserror(host, "/secret")
    assert exc.errno == errno.EACCES
    assert exc.filename == "/secret"
