"""Emulated process credentials: the set*id family with Linux/POSIX permission rules.

Under `-0`/`-i` the kernel never sees an id change: every set*id call is
answered by this state machine, one instance per traced process (copied on
fork, kept across exec). "Privileged" follows the kernel's capability rules
for a process without file capabilities (capabilities(7), "Effect of user ID
changes on capabilities"), with the whole capability set as one bit:
permitted/effective are full for root; dropping every uid 0 clears them unless
PR_SET_KEEPCAPS was set; leaving euid 0 clears the effective set, coming back
to euid 0 restores it from the permitted set; capset may raise the effective
set within the permitted one (what setpriv and su-like tools do).

Every method returns 0 or a negative errno, like the syscall it emulates.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field, replace

NOCHANGE = 0xFFFFFFFF  # (uid_t)-1 as the kernel sees the argument
NGROUPS_MAX = 65536


def _arg(value: int) -> int:
    """Normalise a syscall argument (64-bit register) to a 32-bit id."""
    return value & 0xFFFFFFFF


@dataclass
class Creds:
    ruid: int = 0
    euid: int = 0
    suid: int = 0
    fsuid: int = 0
    rgid: int = 0
    egid: int = 0
    sgid: int = 0
    fsgid: int = 0
    groups: list[int] = field(default_factory=list)
    cap_permitted: bool | None = None  # None: as for a fresh process (full iff a uid is 0)
    cap_effective: bool | None = None
    keepcaps: bool = False

    def __post_init__(self) -> None:
        if self.cap_permitted is None:
            self.cap_permitted = 0 in (self.ruid, self.euid, self.suid)
        if self.cap_effective is None:
            self.cap_effective = self.euid == 0

    @classmethod
    def initial(cls, uid: int, gid: int) -> Creds:
        """What a process started as `uid:gid` has (root also gets group 0 as supplementary,
        like a login shell of root; other ids get none)."""
        return cls(uid, uid, uid, uid, gid, gid, gid, gid, [gid] if uid == 0 else [])

    def copy(self) -> Creds:
        return replace(self, groups=list(self.groups))

    def _uids_changed(self, old_r: int, old_e: int, old_s: int) -> None:
        """The kernel's cap_emulate_setxuid."""
        if 0 in (old_r, old_e, old_s) and 0 not in (self.ruid, self.euid, self.suid):
            if not self.keepcaps:
                self.cap_permitted = self.cap_effective = False
        if old_e == 0 and self.euid != 0:
            self.cap_effective = False
        if old_e != 0 and self.euid == 0:
            self.cap_effective = self.cap_permitted

    def capset(self, permitted: bool, effective: bool) -> int:
        """capset(2) reduced to one bit: no raising beyond the permitted set."""
        if permitted and not self.cap_permitted:
            return -errno.EPERM
        if effective and not permitted:
            return -errno.EPERM
        self.cap_permitted, self.cap_effective = permitted, effective
        return 0

    @property
    def privileged(self) -> bool:
        """CAP_SETUID/CAP_SETGID/CAP_CHOWN/... are effective."""
        return bool(self.cap_effective)

    # ---- uids -------------------------------------------------------------

    def setuid(self, uid: int) -> int:
        uid = _arg(uid)
        if uid == NOCHANGE:
            return -errno.EINVAL
        old = (self.ruid, self.euid, self.suid)
        if self.privileged:
            self.ruid = self.euid = self.suid = self.fsuid = uid
        elif uid in (self.ruid, self.suid):
            self.euid = self.fsuid = uid
        else:
            return -errno.EPERM
        self._uids_changed(*old)
        return 0

    def setreuid(self, ruid: int, euid: int) -> int:
        ruid, euid = _arg(ruid), _arg(euid)
        old_ruid, old_euid = self.ruid, self.euid
        new_ruid = old_ruid if ruid == NOCHANGE else ruid
        new_euid = old_euid if euid == NOCHANGE else euid
        if not self.privileged:
            if ruid != NOCHANGE and ruid not in (old_ruid, old_euid):
                return -errno.EPERM
            if euid != NOCHANGE and euid not in (old_ruid, old_euid, self.suid):
                return -errno.EPERM
        old = (self.ruid, self.euid, self.suid)
        if ruid != NOCHANGE or (euid != NOCHANGE and new_euid != old_ruid):
            self.suid = new_euid
        self.ruid, self.euid, self.fsuid = new_ruid, new_euid, new_euid
        self._uids_changed(*old)
        return 0

    def setresuid(self, ruid: int, euid: int, suid: int) -> int:
        ruid, euid, suid = _arg(ruid), _arg(euid), _arg(suid)
        if not self.privileged:
            allowed = (self.ruid, self.euid, self.suid)
            for value in (ruid, euid, suid):
                if value != NOCHANGE and value not in allowed:
                    return -errno.EPERM
        old = (self.ruid, self.euid, self.suid)
        if ruid != NOCHANGE:
            self.ruid = ruid
        if euid != NOCHANGE:
            self.euid = euid
        if suid != NOCHANGE:
            self.suid = suid
        self.fsuid = self.euid
        self._uids_changed(*old)
        return 0

    def setfsuid(self, fsuid: int) -> int:
        """Returns the previous fsuid whether or not it changed (as the kernel does)."""
        fsuid = _arg(fsuid)
        old = self.fsuid
        if fsuid != NOCHANGE and (
            self.privileged or fsuid in (self.ruid, self.euid, self.suid, self.fsuid)
        ):
            self.fsuid = fsuid
        return old

    # ---- gids -------------------------------------------------------------

    def setgid(self, gid: int) -> int:
        gid = _arg(gid)
        if gid == NOCHANGE:
            return -errno.EINVAL
        if self.privileged:
            self.rgid = self.egid = self.sgid = self.fsgid = gid
        elif gid in (self.rgid, self.sgid):
            self.egid = self.fsgid = gid
        else:
            return -errno.EPERM
        return 0

    def setregid(self, rgid: int, egid: int) -> int:
        rgid, egid = _arg(rgid), _arg(egid)
        old_rgid, old_egid = self.rgid, self.egid
        new_rgid = old_rgid if rgid == NOCHANGE else rgid
        new_egid = old_egid if egid == NOCHANGE else egid
        if not self.privileged:
            if rgid != NOCHANGE and rgid not in (old_rgid, old_egid):
                return -errno.EPERM
            if egid != NOCHANGE and egid not in (old_rgid, old_egid, self.sgid):
                return -errno.EPERM
        if rgid != NOCHANGE or (egid != NOCHANGE and new_egid != old_rgid):
            self.sgid = new_egid
        self.rgid, self.egid, self.fsgid = new_rgid, new_egid, new_egid
        return 0

    def setresgid(self, rgid: int, egid: int, sgid: int) -> int:
        rgid, egid, sgid = _arg(rgid), _arg(egid), _arg(sgid)
        if not self.privileged:
            allowed = (self.rgid, self.egid, self.sgid)
            for value in (rgid, egid, sgid):
                if value != NOCHANGE and value not in allowed:
                    return -errno.EPERM
        if rgid != NOCHANGE:
            self.rgid = rgid
        if egid != NOCHANGE:
            self.egid = egid
        if sgid != NOCHANGE:
            self.sgid = sgid
        self.fsgid = self.egid
        return 0

    def setfsgid(self, fsgid: int) -> int:
        fsgid = _arg(fsgid)
        old = self.fsgid
        if fsgid != NOCHANGE and (
            self.privileged or fsgid in (self.rgid, self.egid, self.sgid, self.fsgid)
        ):
            self.fsgid = fsgid
        return old

    def setgroups(self, groups: list[int]) -> int:
        if not self.privileged:
            return -errno.EPERM
        if len(groups) > NGROUPS_MAX:
            return -errno.EINVAL
        self.groups = sorted({_arg(g) for g in groups})
        return 0

    def getgroups(self, size: int) -> tuple[int, list[int]]:
        """(result, groups to copy out): size 0 asks only for the count."""
        size &= 0xFFFFFFFF
        if size >= 0x80000000:  # a negative int in the guest

            return -errno.EINVAL, []
        if size == 0:
            return len(self.groups), []
        if size < len(self.groups):
            return -errno.EINVAL, []
        return len(self.groups), list(self.groups)

    # ---- exec -------------------------------------------------------------

    def on_exec(self, file_uid: int | None = None, file_gid: int | None = None) -> None:
        """execve: a set-user/group-ID program switches the effective (and saved) id;
        every exec copies the effective ids to the saved ones (execve(2))."""
        if file_uid is not None:
            self.euid = self.fsuid = file_uid
        if file_gid is not None:
            self.egid = self.fsgid = file_gid
        self.suid, self.sgid = self.euid, self.egid
        # capabilities(7), "Capabilities and execution of programs by root"
        self.cap_permitted = 0 in (self.ruid, self.euid)
        self.cap_effective = self.euid == 0
        self.keepcaps = False

    # ---- permission helpers for the fake-root extension --------------------

    def in_group(self, gid: int) -> bool:
        return gid == self.fsgid or gid in self.groups

    def may_chown(self, owner_uid: int, owner_gid: int, uid: int, gid: int) -> bool:
        """chown(2): only root changes the owner; the owner may change the group to
        one of its own groups."""
        if self.fsuid == 0:
            return True
        uid, gid = _arg(uid), _arg(gid)
        if uid != NOCHANGE and uid != owner_uid:
            return False
        if self.fsuid != owner_uid:
            return False
        return gid == NOCHANGE or gid == owner_gid or self.in_group(gid)

    def may_chmod(self, owner_uid: int) -> bool:
        return self.fsuid == 0 or self.fsuid == owner_uid
