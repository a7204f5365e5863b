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

from ocirun.util.records import dataclass, field, replace

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

    # ---- uids and gids: one set of rules over either kind -------------------

    def _get(self, k: str) -> tuple[int, int, int, int]:
        """(real, effective, saved, fs) ids of kind `k`: "u" or "g"."""
        return getattr(self, f"r{k}id"), getattr(self, f"e{k}id"), getattr(self, f"s{k}id"), getattr(self, f"fs{k}id")

    def _put(self, k: str, r: int, e: int, s: int, fs: int) -> None:
        setattr(self, f"r{k}id", r)
        setattr(self, f"e{k}id", e)
        setattr(self, f"s{k}id", s)
        setattr(self, f"fs{k}id", fs)

    def _changed(self, k: str, old: tuple[int, int, int, int]) -> int:
        """After a uid change, the capability rules (gids have none); the syscall's 0."""
        if k == "u":
            self._uids_changed(*old[:3])
        return 0

    def _setid(self, k: str, value: int) -> int:
        """setuid/setgid(2)."""
        value = _arg(value)
        if value == NOCHANGE:
            return -errno.EINVAL
        old = r, e, s, fs = self._get(k)
        if self.privileged:
            self._put(k, value, value, value, value)
        elif value in (r, s):
            self._put(k, r, value, s, value)
        else:
            return -errno.EPERM
        return self._changed(k, old)

    def _setreid(self, k: str, real: int, eff: int) -> int:
        """setreuid/setregid(2): the saved id follows the new effective one when the real
        id is set, or the effective one is set to other than the old real one."""
        real, eff = _arg(real), _arg(eff)
        old = r, e, s, _fs = self._get(k)
        new_r = r if real == NOCHANGE else real
        new_e = e if eff == NOCHANGE else eff
        if not self.privileged:
            if real != NOCHANGE and real not in (r, e):
                return -errno.EPERM
            if eff != NOCHANGE and eff not in (r, e, s):
                return -errno.EPERM
        if real != NOCHANGE or (eff != NOCHANGE and new_e != r):
            s = new_e
        self._put(k, new_r, new_e, s, new_e)
        return self._changed(k, old)

    def _setresid(self, k: str, real: int, eff: int, saved: int) -> int:
        """setresuid/setresgid(2): each id to one of the current three, unless privileged."""
        wanted = (_arg(real), _arg(eff), _arg(saved))
        old = self._get(k)
        if not self.privileged and any(v != NOCHANGE and v not in old[:3] for v in wanted):
            return -errno.EPERM
        r, e, s = (cur if v == NOCHANGE else v for v, cur in zip(wanted, old[:3], strict=True))
        self._put(k, r, e, s, e)
        return self._changed(k, old)

    def _setfsid(self, k: str, value: int) -> int:
        """setfsuid/setfsgid(2): the previous fs id whether or not it changed (as the kernel)."""
        value = _arg(value)
        old = r, e, s, fs = self._get(k)
        if value != NOCHANGE and (self.privileged or value in old):
            self._put(k, r, e, s, value)
        return fs

    def setuid(self, uid: int) -> int:
        return self._setid("u", uid)

    def setgid(self, gid: int) -> int:
        return self._setid("g", gid)

    def setreuid(self, ruid: int, euid: int) -> int:
        return self._setreid("u", ruid, euid)

    def setregid(self, rgid: int, egid: int) -> int:
        return self._setreid("g", rgid, egid)

    def setresuid(self, ruid: int, euid: int, suid: int) -> int:
        return self._setresid("u", ruid, euid, suid)

    def setresgid(self, rgid: int, egid: int, sgid: int) -> int:
        return self._setresid("g", rgid, egid, sgid)

    def setfsuid(self, fsuid: int) -> int:
        return self._setfsid("u", fsuid)

    def setfsgid(self, fsgid: int) -> int:
        return self._setfsid("g", fsgid)

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
