"""-0 and -i on the real Debian tree: what the guest sees and what is remembered.

These tests prove something only when run unprivileged (CI also runs them as
ocirun-test); as root the kernel would grant most of it anyway, so the checks
of the host side below are made only when unprivileged.
"""

from __future__ import annotations

import os
import stat

import pytest

from tests.extensions.guest import proot, sh, unprivileged


def test_id_whoami_and_owner_of_files(debian_rootfs_copy):
    out = sh(debian_rootfs_copy, "id -u; id -g; id -G; whoami; stat -c %U:%G /etc/passwd /bin/ls",
             "-0").stdout.split()
    assert out == ["0", "0", "0", "root", "root:root", "root:root"]


def test_change_id(debian_rootfs_copy):
    out = sh(debian_rootfs_copy, "id -u; id -g; touch /tmp/new; stat -c %u:%g /tmp/new",
             "-i", "123:456").stdout.split()
    assert out == ["123", "456", "123:456"]
    # not root: giving a file away is refused, as chown(2) says
    proc = proot(debian_rootfs_copy, "chown", "0", "/tmp/new", opts=("-i", "123:456"))
    assert proc.returncode != 0 and "Operation not permitted" in proc.stderr


def test_auxv_ids(debian_rootfs_copy):
    out = sh(debian_rootfs_copy, "LD_SHOW_AUXV=1 /bin/true", "-i", "7:8").stdout
    aux = dict(line.split(":", 1) for line in out.splitlines() if line.startswith("AT_"))
    assert {k: aux[k].strip() for k in ("AT_UID", "AT_EUID", "AT_GID", "AT_EGID")} == {
        "AT_UID": "7", "AT_EUID": "7", "AT_GID": "8", "AT_EGID": "8"}


def test_chown_chmod_mknod_remembered_across_runs(debian_rootfs_copy):
    root = debian_rootfs_copy
    sh(root, """
        set -e
        mkdir /srv/d; touch /srv/d/f /srv/d/exe /srv/gone
        chown 1000:50 /srv/d/f
        chmod 4755 /srv/d/exe; chown daemon /srv/d/exe  # chown clears set-user-ID
        chmod 4750 /srv/d/exe
        chmod 0 /srv/d
        mknod /srv/null c 1 3; mknod /srv/sda b 8 0
        chown 33:33 /srv/gone; rm /srv/gone
        mv /srv/d /srv/moved
    """, "-0")
    out = sh(root, "stat -c '%n %u:%g %a %F %t:%T' /srv/moved /srv/moved/f /srv/moved/exe"
                   " /srv/null /srv/sda; ls /srv", "-0").stdout.splitlines()
    assert out[:5] == [
        "/srv/moved 0:0 0 directory 0:0",
        "/srv/moved/f 1000:50 644 regular empty file 0:0",
        "/srv/moved/exe 1:0 4750 regular empty file 0:0",
        "/srv/null 0:0 644 character special file 1:3",
        "/srv/sda 0:0 644 block special file 8:0",
    ]
    assert "gone" not in out[5:]
    # fstat (perl's stat on a handle) and lstat (ls -l) say the same
    out = sh(root, "perl -e 'open F, q{<}, q{/srv/moved/f} or die; my @s = stat F;"
                   " my @n = lstat q{/srv/null}; printf qq{%d:%d %o %d\\n}, @s[4,5], $n[2], $n[6]'",
             "-0").stdout.split()
    assert out == ["1000:50", "20644", str(os.makedev(1, 3))]
    # A new file that may reuse /srv/gone's inode number does not inherit its owner.
    out = sh(root, "touch /srv/new; stat -c %u:%g /srv/new", "-0").stdout.split()
    assert out == ["0:0"]
    if unprivileged():
        # Nothing was really chowned, the device is a placeholder, and the real user
        # kept its access to the 0000 directory.
        f = os.lstat(root / "srv/moved/f")
        assert f.st_uid == os.getuid()
        assert stat.S_ISREG(os.lstat(root / "srv/null").st_mode)
        assert os.lstat(root / "srv/moved").st_mode & 0o700 == 0o700
    # The database is beside the tree, not in it.
    assert (root.parent / f".{root.name}.ocirun-fakeroot.db").is_file()


def test_permission_checks_root_would_pass(debian_rootfs_copy):
    """The manual's example, and more: 0555/0000 directories, a 0000 file, access(2)."""
    out = sh(debian_rootfs_copy, """
        set -e
        mkdir /tmp/foo; chmod a-rwx /tmp/foo
        echo 'I bypass file-system permissions.' > /tmp/foo/bar
        cat /tmp/foo/bar
        echo secret > /tmp/f0; chmod 0 /tmp/f0; cat /tmp/f0
        mkdir /tmp/ro; chmod 555 /tmp/ro; touch /tmp/ro/x; mkdir /tmp/ro/sub; rm /tmp/ro/x
        test -w /tmp/ro && echo writable
        test -r /tmp/f0 && echo readable
        test -x /tmp/f0 || echo not-executable
        stat -c %a /tmp/foo /tmp/f0 /tmp/ro
    """, "-0").stdout.split("\n")
    assert out[:9] == ["I bypass file-system permissions.", "secret", "writable", "readable",
                       "not-executable", "0", "0", "555", ""]


def test_image_modes_the_user_cannot_use(debian_rootfs_copy):
    """A 0555 directory and a 0000 file that come with the tree (not chmod'ed by the guest)."""
    root = debian_rootfs_copy
    (root / "opt/ro").mkdir()
    (root / "opt/ro/f").write_text("x\n")
    os.chmod(root / "opt/ro/f", 0)
    os.chmod(root / "opt/ro", 0o555)
    out = sh(root, "cat /opt/ro/f; echo y > /opt/ro/g; cat /opt/ro/g; stat -c %a /opt/ro /opt/ro/f",
             "-0").stdout.split()
    assert out == ["x", "y", "555", "0"]


def test_setid_family_and_groups(debian_rootfs_copy):
    out = sh(debian_rootfs_copy, """
        setpriv --reuid=1000 --regid=1000 --clear-groups id
        setpriv --reuid=33 --regid=33 --groups=4,24 sh -c 'id -u; id -G'
        perl -e 'use POSIX; POSIX::setgid(100) or die; POSIX::setuid(100) or die;
                 print "$< $> ", (POSIX::setuid(0) ? "back" : "EPERM:$!"), "\n"'
        perl -e '$> = 5; print "euid=$> ruid=$<\n"; $> = 0; print "euid=$>\n"'
    """, "-0").stdout.splitlines()
    assert out[0].startswith("uid=1000") and "gid=1000" in out[0] and "groups=1000" in out[0]
    assert out[1:3] == ["33", "33 4 24"]
    assert out[3] == "100 100 EPERM:Operation not permitted"
    assert out[4:6] == ["euid=5 ruid=0", "euid=0"]


def test_files_created_by_a_guest_user_are_its_own(debian_rootfs_copy):
    out = sh(debian_rootfs_copy, """
        setpriv --reuid=33 --regid=33 --clear-groups sh -c 'touch /tmp/w; mkdir /tmp/wd'
        stat -c %U:%G /tmp/w /tmp/wd
    """, "-0").stdout.split()
    assert out == ["www-data:www-data", "www-data:www-data"]


def test_useradd_su_runuser_chown_r(debian_rootfs_copy):
    out = sh(debian_rootfs_copy, """
        set -e
        useradd -m -s /bin/sh guest
        su guest -c 'id -un; touch ~/mine; stat -c %U ~/mine'
        runuser -u guest -- id -u
        mkdir -p /srv/t/a/b; touch /srv/t/a/b/f
        chown -R guest:guest /srv/t
        stat -c %U:%G /srv/t /srv/t/a/b/f /home/guest
    """, "-0").stdout.split()
    assert out == ["guest", "guest", "1000", "guest:guest", "guest:guest", "guest:guest"]
    # remembered in the next run
    out = sh(debian_rootfs_copy, "stat -c %U /srv/t/a/b /home/guest/mine", "-0").stdout.split()
    assert out == ["guest", "guest"]


DEB_SCRIPT = """
set -e
mkdir -p /tmp/pkg/DEBIAN /tmp/pkg/usr/share/demo /tmp/pkg/usr/bin
printf 'Package: demo\\nVersion: {v}\\nArchitecture: all\\nMaintainer: t <t@t>\\nDescription: demo\\n' > /tmp/pkg/DEBIAN/control
echo 'echo demo {v}' > /tmp/pkg/usr/bin/demo; chmod 755 /tmp/pkg/usr/bin/demo
echo data > /tmp/pkg/usr/share/demo/a; ln /tmp/pkg/usr/share/demo/a /tmp/pkg/usr/share/demo/b
chown -R 0:0 /tmp/pkg; chown 1:1 /tmp/pkg/usr/share/demo/a
dpkg-deb -b /tmp/pkg /tmp/demo_{v}.deb >/dev/null  # owners as the fake root sees them
rm -rf /tmp/pkg
"""


def build_demo_deb(root, version: str, *opts: str) -> None:
    sh(root, DEB_SCRIPT.format(v=version), "-0", *opts)


def test_dpkg_i(debian_rootfs_copy):
    build_demo_deb(debian_rootfs_copy, "1.0")
    out = sh(debian_rootfs_copy, """
        set -e
        dpkg -i /tmp/demo_1.0.deb >/dev/null
        demo
        stat -c '%U %h' /usr/share/demo/a
        dpkg -s demo | grep Status
    """, "-0").stdout.splitlines()
    assert out == ["demo 1.0", "daemon 2", "Status: install ok installed"]


@pytest.mark.slow
@pytest.mark.network
def test_apt_get_update_and_install_hello_and_sudo(debian_rootfs_copy):
    proc = sh(debian_rootfs_copy, """
        set -e
        apt-get update -q >/dev/null
        apt-get install -y -q hello sudo >/dev/null
        hello
        stat -c %U /var/cache/apt/archives/partial
        dpkg -r hello >/dev/null; test -e /usr/bin/hello || echo removed
        dpkg -i /var/cache/apt/archives/hello_*.deb >/dev/null; hello
        useradd -m guest; echo 'guest ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/guest
        chmod 440 /etc/sudoers.d/guest
        su guest -c 'id -un; sudo -n id -un; sudo -n -u guest id -un'
    """, "-0", timeout=600)
    assert proc.stdout.split("\n")[:7] == [
        "Hello, world!", "_apt", "removed", "Hello, world!", "guest", "root", "guest"]
    assert "dropping privileges" not in proc.stderr.lower()


def test_two_engines_on_one_rootfs(debian_rootfs_copy):
    """Two -0 runs at the same time on the same tree share the database."""
    import subprocess

    from tests.extensions.guest import BINDS, GUEST_ENV, LAUNCHER
    from tests.helpers import REPO_ROOT, ocirun_env

    procs = []
    for n, uid in ((1, 101), (2, 102)):
        script = (f"mkdir -p /srv/e{n}; for i in $(seq 40); do touch /srv/e{n}/f$i; "
                  f"chown {uid}:{uid} /srv/e{n}/f$i; done")
        procs.append(subprocess.Popen(
            [*LAUNCHER, "-r", str(debian_rootfs_copy), *BINDS, "-0", "/bin/sh", "-c", script],
            env=ocirun_env(GUEST_ENV), cwd=str(REPO_ROOT), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    out = sh(debian_rootfs_copy, "stat -c %u /srv/e1/* /srv/e2/* | sort | uniq -c", "-0").stdout
    assert out.split() == ["40", "101", "40", "102"]


def test_seeded_from_the_image_ownership_file(debian_rootfs_copy):
    """What the unpacker could not apply (layers' `ownership` file beside the rootfs)."""
    import json

    (debian_rootfs_copy / "srv/app").mkdir()
    doc = {"version": 1, "entries": {
        "srv/app": {"uid": 1000, "gid": 1000, "mode": 0o750},
        "etc/shadow": {"uid": 0, "gid": 42, "mode": 0o640},
        "srv/tty9": {"type": "c", "major": 4, "minor": 9, "mode": 0o620, "uid": 0, "gid": 5,
                     "skipped": True},
        "srv/fifo": {"type": "p", "mode": 0o600, "uid": 0, "gid": 0, "skipped": True},
    }}
    (debian_rootfs_copy.parent / "ownership").write_text(json.dumps(doc))
    out = sh(debian_rootfs_copy, "stat -c '%n %u:%g %a %F %t:%T' /srv/app /etc/shadow /srv/tty9"
                                 " /srv/fifo", "-0").stdout.splitlines()
    assert out == ["/srv/app 1000:1000 750 directory 0:0",
                   "/etc/shadow 0:42 640 regular file 0:0",
                   "/srv/tty9 0:5 620 character special file 4:9",
                   "/srv/fifo 0:0 600 fifo 0:0"]


def test_runner_ids_file_owner_is_root(debian_rootfs_copy):
    """for_runner: the container user's ids for processes, root for the image's files,
    the creator for new files."""
    from ocirun.engine import run
    from ocirun.engine.extensions import for_runner
    from ocirun.engine.plan import EnginePlan

    out = debian_rootfs_copy / "tmp/out"
    exts = for_runner(uid=1000, gid=1000, rootfs=str(debian_rootfs_copy),
                      state_dir=str(debian_rootfs_copy.parent))
    plan = EnginePlan(argv=["/bin/sh", "-c", "{ id -u; stat -c %u /etc/passwd; touch /tmp/mine;"
                            " stat -c %u:%g /tmp/mine; } > /tmp/out"],
                      rootfs=str(debian_rootfs_copy), extensions=exts,
                      env={"PATH": "/usr/bin:/bin"})
    assert run(plan) == 0
    assert out.read_text().split() == ["1000", "0", "1000:1000"]
    assert (debian_rootfs_copy.parent / "fakeroot.db").is_file()
