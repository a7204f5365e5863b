"""Credentials: the get*id/set*id family, groups, capabilities, and the calls
only root may make that report success (sethostname, chroot to the guest root)."""

from __future__ import annotations

import errno
import os
import struct

from ocirun.engine.extensions.fake_id0.creds import NGROUPS_MAX
from ocirun.engine.extensions.fake_id0.fast import mirror_ids
from ocirun.engine.extensions.fake_id0.tables import (
    _CAP_V1,
    _CAP_V2,
    _CAP_V3,
    _ID_GETTERS,
    _ID_NARGS,
    _ID_SETTERS,
    PR_GET_KEEPCAPS,
    PR_SET_KEEPCAPS,
    _full_caps,
)

TYPE_CHECKING = False  # typing's, without importing typing (start-up time)
if TYPE_CHECKING:
    from ocirun.engine.syscall import Syscall
    from ocirun.engine.tracee import Tracee


class IdCalls:
    """Part of FakeId0 (ocirun/engine/extensions/fake_id0/__init__.py)."""

    # ---- ids --------------------------------------------------------------------------

    def _get_id(self, tracee: Tracee, sc: Syscall) -> None:
        sc.skip(_ID_GETTERS[sc.name](self.creds(tracee)))
        mirror_ids(self, tracee)

    def _set_id(self, tracee: Tracee, sc: Syscall) -> None:
        args = sc.args[: _ID_NARGS[sc.name]]
        sc.skip(_ID_SETTERS[sc.name](self.creds(tracee), *args))
        mirror_ids(self, tracee)

    def _getres(self, tracee: Tracee, sc: Syscall) -> None:
        c = self.creds(tracee)
        ids = (c.ruid, c.euid, c.suid) if sc.name == "getresuid" else (c.rgid, c.egid, c.sgid)
        try:
            for i, value in enumerate(ids):
                tracee.write_u32(sc.args[i], value)
        except OSError:
            sc.skip(-errno.EFAULT)
            return
        sc.skip(0)

    def _getgroups(self, tracee: Tracee, sc: Syscall) -> None:
        result, groups = self.creds(tracee).getgroups(sc.args[0])
        if groups:
            try:
                tracee.write(sc.args[1], struct.pack(f"<{len(groups)}I", *groups))
            except OSError:
                result = -errno.EFAULT
        sc.skip(result)

    def _setgroups(self, tracee: Tracee, sc: Syscall) -> None:
        size = sc.arg_int(0)
        if size < 0 or size > NGROUPS_MAX:
            sc.skip(-errno.EINVAL)
            return
        groups: list[int] = []
        if size:
            try:
                groups = list(struct.unpack(f"<{size}I", tracee.read(sc.args[1], 4 * size)))
            except OSError:
                sc.skip(-errno.EFAULT)
                return
        sc.skip(self.creds(tracee).setgroups(groups))

    def _cap_header(self, tracee: Tracee, sc: Syscall) -> int | None:
        """Words per set in capget/capset's data for this header, or None: not ours."""
        try:
            version, pid = struct.unpack("<Ii", tracee.read(sc.args[0], 8))
        except OSError:
            return None
        if pid not in (0, tracee.pid) or not sc.args[1]:
            return None
        return {_CAP_V1: 1, _CAP_V2: 2, _CAP_V3: 2}.get(version)

    def _capget(self, tracee: Tracee, sc: Syscall) -> None:
        words = self._cap_header(tracee, sc)
        if words is None:
            return
        c = self.creds(tracee)
        full = _full_caps()
        data = b""
        for i in range(words):
            eff = full[i] if c.cap_effective else 0
            perm = full[i] if c.cap_permitted else 0
            data += struct.pack("<III", eff, perm, 0)
        try:
            tracee.write(sc.args[1], data)
        except OSError:
            sc.skip(-errno.EFAULT)
            return
        sc.skip(0)

    def _capset(self, tracee: Tracee, sc: Syscall) -> None:
        words = self._cap_header(tracee, sc)
        if words is None:
            return
        try:
            raw = struct.unpack(f"<{3 * words}I", tracee.read(sc.args[1], 12 * words))
        except OSError:
            sc.skip(-errno.EFAULT)
            return
        effective = any(raw[3 * i] for i in range(words))
        permitted = any(raw[3 * i + 1] for i in range(words))
        sc.skip(self.creds(tracee).capset(permitted, effective))

    def _prctl(self, tracee: Tracee, sc: Syscall) -> None:
        option = sc.arg_int(0)
        c = self.creds(tracee)
        # PR_SET/GET_DUMPABLE: answered by the engine core (ocirun/engine/loop.py)
        if option == PR_GET_KEEPCAPS:
            sc.skip(int(c.keepcaps))
        elif option == PR_SET_KEEPCAPS:
            if sc.args[1] > 1:
                sc.skip(-errno.EINVAL)
            else:
                c.keepcaps = bool(sc.args[1])
                sc.skip(0)

    def _ok(self, tracee: Tracee, sc: Syscall) -> None:
        if self.creds(tracee).privileged:
            sc.skip(0)

    def _chroot(self, tracee: Tracee, sc: Syscall) -> None:
        host = sc.host_paths.get(0)
        if host and self.creds(tracee).privileged and os.path.realpath(host) == self.rootfs:
            sc.skip(0)

    def _setxattr(self, tracee: Tracee, sc: Syscall) -> None:
        try:
            name = tracee.read_string(sc.args[1], 256)
        except OSError:
            return
        if name.startswith(("security.", "trusted.")) and self.creds(tracee).privileged:
            sc.skip(0)
