"""The set*id state machine against the kernel's documented rules (setuid(2), setresuid(2), ...)."""

from __future__ import annotations

import errno

from ocirun.engine.extensions.fake_id0.creds import NOCHANGE, Creds

EPERM = -errno.EPERM


def test_root_setuid_drops_everything_for_good():
    c = Creds.initial(0, 0)
    assert c.setgroups([]) == 0
    assert c.setgid(100) == 0
    assert c.setuid(100) == 0
    assert (c.ruid, c.euid, c.suid, c.fsuid) == (100, 100, 100, 100)
    assert (c.rgid, c.egid, c.sgid, c.fsgid) == (100, 100, 100, 100)
    # apt's check after dropping privileges: going back must fail
    assert c.setuid(0) == EPERM
    assert c.setresuid(0, 0, 0) == EPERM
    assert c.setgroups([0]) == EPERM
    assert c.setgid(0) == EPERM


def test_seteuid_and_back_keeps_saved_root():
    c = Creds.initial(0, 0)
    assert c.setresuid(NOCHANGE, 1000, NOCHANGE) == 0  # seteuid(1000)
    assert (c.ruid, c.euid, c.suid, c.fsuid) == (0, 1000, 0, 1000)
    assert c.setgid(5) == EPERM  # not privileged while euid != 0
    assert c.setresuid(NOCHANGE, 0, NOCHANGE) == 0  # back to root: 0 is the real/saved id
    assert c.euid == 0


def test_unprivileged_setuid_only_to_real_or_saved():
    c = Creds.initial(1000, 1000)
    assert c.setuid(0) == EPERM
    assert c.setuid(1000) == 0
    c = Creds(ruid=1000, euid=0, suid=0, fsuid=0)
    # privileged (euid 0): setuid sets all three
    assert c.setuid(1000) == 0
    assert (c.ruid, c.euid, c.suid) == (1000, 1000, 1000)


def test_setreuid_saved_id_rule():
    c = Creds(ruid=1000, euid=2000, suid=3000, fsuid=2000)
    # euid may become ruid/euid/suid; ruid changes only to ruid/euid
    assert c.setreuid(NOCHANGE, 3000) == 0
    # new euid differs from the real uid -> saved uid follows it
    assert (c.ruid, c.euid, c.suid, c.fsuid) == (1000, 3000, 3000, 3000)
    assert c.setreuid(4000, NOCHANGE) == EPERM
    assert c.setreuid(3000, 1000) == 0  # swap
    assert (c.ruid, c.euid, c.suid) == (3000, 1000, 1000)


def test_setresuid_unprivileged_permutation():
    c = Creds(ruid=1, euid=2, suid=3, fsuid=2)
    assert c.setresuid(3, 1, 2) == 0
    assert (c.ruid, c.euid, c.suid, c.fsuid) == (3, 1, 2, 1)
    assert c.setresuid(4, NOCHANGE, NOCHANGE) == EPERM
    assert (c.ruid, c.euid, c.suid) == (3, 1, 2)  # unchanged on failure


def test_setfsuid_returns_old_value_and_checks():
    c = Creds.initial(1000, 1000)
    assert c.setfsuid(0) == 1000
    assert c.fsuid == 1000  # refused silently
    r = Creds.initial(0, 0)
    assert r.setfsuid(33) == 0
    assert r.fsuid == 33
    assert r.setfsuid(NOCHANGE) == 33  # query


def test_gid_family_mirrors_uid_family():
    c = Creds.initial(0, 0)
    assert c.setresgid(10, 20, 30) == 0
    assert (c.rgid, c.egid, c.sgid, c.fsgid) == (10, 20, 30, 20)
    assert c.setregid(NOCHANGE, 10) == 0
    assert c.setfsgid(99) == 10  # returns the old fsgid (egid after setregid)
    assert c.sgid == 30  # new egid equals the real gid: saved gid kept
    c2 = Creds.initial(1000, 1000)
    assert c2.setgid(0) == EPERM
    assert c2.setregid(0, NOCHANGE) == EPERM
    assert c2.setresgid(NOCHANGE, 1000, NOCHANGE) == 0


def test_groups():
    c = Creds.initial(0, 0)
    assert c.getgroups(0) == (1, [])
    assert c.setgroups([4, 24, 4, 27]) == 0
    assert c.getgroups(0) == (3, [])
    assert c.getgroups(3) == (3, [4, 24, 27])
    assert c.getgroups(2) == (-errno.EINVAL, [])
    assert c.getgroups(0xFFFFFFFF) == (-errno.EINVAL, [])  # negative int
    assert c.in_group(24) and not c.in_group(5)
    assert Creds.initial(1000, 1000).setgroups([]) == EPERM


def test_exec_setuid_program_and_saved_ids():
    c = Creds.initial(1000, 1000)
    c.on_exec(file_uid=0)  # e.g. sudo
    assert (c.ruid, c.euid, c.suid, c.fsuid) == (1000, 0, 0, 0)
    assert c.setuid(0) == 0  # privileged now: all become 0
    assert c.ruid == 0


def test_chown_chmod_permission_rules():
    root = Creds.initial(0, 0)
    assert root.may_chown(1000, 1000, 5, 5)
    user = Creds.initial(1000, 1000)
    user.groups = [1000, 24]
    assert not user.may_chown(1000, 1000, 0, NOCHANGE)  # give away: no
    assert user.may_chown(1000, 1000, NOCHANGE, 24)  # own file to own group: yes
    assert user.may_chown(1000, 1000, 1000, 1000)
    assert not user.may_chown(1000, 1000, NOCHANGE, 0)  # group not ours
    assert not user.may_chown(0, 0, NOCHANGE, 24)  # not the owner
    assert user.may_chmod(1000) and not user.may_chmod(0)


def test_copy_is_independent():
    a = Creds.initial(0, 0)
    b = a.copy()
    b.setgroups([7])
    b.setuid(5)
    assert a.euid == 0 and a.groups == [0]
