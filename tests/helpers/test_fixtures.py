"""The shared fixtures and helpers are what the other test areas assume they are."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
from pathlib import Path

import pytest

from tests.helpers import assert_one_line_error, run_ocirun

EM_ARM, EM_X86_64, EM_AARCH64 = 40, 62, 183


def elf_machine(path: Path) -> int:
    """e_machine of an ELF file (little-endian targets only)."""
    head = path.read_bytes()[:20]
    assert head[:4] == b"\x7fELF", f"{path} is not ELF"
    return int.from_bytes(head[18:20], "little")


def test_debian_rootfs_is_a_clean_readable_tree(debian_rootfs: Path) -> None:
    assert elf_machine(debian_rootfs / "usr/bin/bash") == EM_X86_64
    assert (debian_rootfs / "bin").is_symlink()  # merged /usr
    assert not (debian_rootfs / "etc/resolv.conf").exists()
    assert not (debian_rootfs / "etc/hostname").exists()
    assert (debian_rootfs / "etc/debian_version").read_text().startswith("12.")
    # Nothing a test wrote (scripts/fixtures makes the tree immutable; it was not at first).
    assert os.listdir(debian_rootfs / "dev") == []
    assert sorted(os.listdir(debian_rootfs / "root")) == [".bashrc", ".profile"]
    unreadable, devices, count = [], [], 0
    for dirpath, dirnames, filenames in os.walk(debian_rootfs):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            count += 1
            if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                devices.append(p)
            elif not stat.S_ISLNK(st.st_mode) and not os.access(p, os.R_OK):
                unreadable.append(p)
    assert count > 5000
    assert not devices, devices[:5]
    assert not unreadable, unreadable[:5]


def test_shared_tree_is_read_only_even_for_root(debian_rootfs: Path) -> None:
    with pytest.raises(PermissionError):
        (debian_rootfs / "tmp/ocirun-write-probe").write_text("x")
    with pytest.raises(PermissionError):
        with open(debian_rootfs / "etc/debian_version", "a") as f:
            f.write("x")


def test_debian_tarball_matches_tree(debian_rootfs_tar: Path) -> None:
    names = subprocess.run(
        ["tar", "-tf", str(debian_rootfs_tar)], check=True, capture_output=True, text=True
    ).stdout.split()
    assert "./usr/bin/bash" in names
    assert "./etc/resolv.conf" not in names


def test_debian_rootfs_copy_is_private(debian_rootfs: Path, debian_rootfs_copy: Path) -> None:
    assert debian_rootfs_copy != debian_rootfs
    (debian_rootfs_copy / "etc/ocirun-test-marker").write_text("x")
    with open(debian_rootfs_copy / "etc/debian_version", "a") as f:  # an existing file too
        f.write("changed\n")
    assert not (debian_rootfs / "etc/ocirun-test-marker").exists()
    assert "changed" not in (debian_rootfs / "etc/debian_version").read_text()
    src = os.stat(debian_rootfs / "usr/bin/bash")
    dst = os.stat(debian_rootfs_copy / "usr/bin/bash")
    assert (src.st_dev, src.st_ino) != (dst.st_dev, dst.st_ino)


def test_debian_arm64_rootfs_has_a_dpkg_database(debian_arm64_rootfs: Path) -> None:
    assert elf_machine(debian_arm64_rootfs / "usr/bin/bash") == EM_AARCH64
    status = (debian_arm64_rootfs / "var/lib/dpkg/status").read_text()
    for pkg in ("bash", "coreutils", "dpkg", "apt"):
        block = status.split(f"\nPackage: {pkg}\n", 1)
        assert len(block) == 2, f"{pkg} not in the dpkg database"
        assert "Status: install ok installed" in block[1].split("\n\n", 1)[0]


@pytest.mark.parametrize(
    ("fixture", "machine"),
    [("busybox_rootfs", EM_X86_64), ("busybox_arm64_rootfs", EM_AARCH64),
     ("busybox_armhf_rootfs", EM_ARM), ("busybox_i386_rootfs", 3)],
)
def test_busybox_trees(request: pytest.FixtureRequest, fixture: str, machine: int) -> None:
    root: Path = request.getfixturevalue(fixture)
    assert elf_machine(root / "bin/busybox") == machine
    assert os.readlink(root / "bin/sh") == "/bin/busybox"
    assert os.readlink(root / "usr/bin/env") == "/bin/busybox"
    assert stat.S_IMODE(os.stat(root / "tmp").st_mode) == 0o1777
    assert (root / "etc/passwd").read_text().startswith("root:x:0:0:")
    assert (root / "etc/group").is_file()
    assert (root / "root").is_dir()


def test_host_busybox_tree_runs_natively(busybox_rootfs: Path) -> None:
    out = subprocess.run([str(busybox_rootfs / "bin/busybox"), "echo", "hi"],
                         check=True, capture_output=True, text=True).stdout
    assert out == "hi\n"


@pytest.mark.parametrize("fixture", ["busybox_arm64_binary", "busybox_armhf_binary"])
def test_foreign_binaries_need_qemu(request: pytest.FixtureRequest, fixture: str) -> None:
    """binfmt_misc must not run foreign programs behind our back, or QEMU tests prove nothing."""
    binary: Path = request.getfixturevalue(fixture)
    with pytest.raises(OSError) as exc:
        subprocess.run([str(binary), "true"], capture_output=True)
    assert exc.value.errno == errno.ENOEXEC


@pytest.mark.parametrize(
    ("fixture", "qemu", "machine"),
    [("busybox_arm64_binary", "qemu-aarch64-static", "aarch64"),
     ("busybox_armhf_binary", "qemu-arm-static", "armv7l")],
)
def test_foreign_busybox_runs_under_qemu(
    request: pytest.FixtureRequest, fixture: str, qemu: str, machine: str
) -> None:
    binary: Path = request.getfixturevalue(fixture)
    out = subprocess.run([qemu, str(binary), "uname", "-m"],
                         check=True, capture_output=True, text=True).stdout
    assert out.strip() == machine


def test_run_ocirun_help_works_as_any_user(tmp_path: Path) -> None:
    cp = run_ocirun("--help", cwd=tmp_path)
    assert cp.returncode == 0, cp.stderr
    assert "Usage" in cp.stdout


def test_assert_one_line_error() -> None:
    ok = subprocess.CompletedProcess([], 125, "", "ocirun: no such image: x\n")
    assert assert_one_line_error(ok, 125) == "ocirun: no such image: x"
    bad = [
        subprocess.CompletedProcess([], 1, "", "ocirun: no such image: x\n"),  # wrong code
        subprocess.CompletedProcess([], 125, "", "Traceback (most recent call last):\n"),
        subprocess.CompletedProcess([], 125, "", "ocirun: a\nocirun: b\n"),
        subprocess.CompletedProcess([], 125, "", "error: x\n"),
        subprocess.CompletedProcess([], 0, "", ""),
    ]
    for cp in bad:
        with pytest.raises(AssertionError):
            assert_one_line_error(cp, 125)


def test_registry_images_are_served(registry_images) -> None:
    import requests

    accept = "application/vnd.oci.image.index.v1+json"
    for ref, platforms in ((registry_images.busybox, registry_images.busybox_platforms),
                           (registry_images.debian, registry_images.debian_platforms)):
        repo, _, tag = ref.split("/", 1)[1].rpartition(":")
        r = requests.get(f"http://{registry_images.host}/v2/{repo}/manifests/{tag}",
                         headers={"Accept": accept}, timeout=10)
        assert r.status_code == 200, r.text
        got = ["/".join(filter(None, (m["platform"]["os"], m["platform"]["architecture"],
                                      m["platform"].get("variant"))))
               for m in r.json()["manifests"]]
        assert got == platforms
    assert "linux/arm64/v8" in registry_images.busybox_platforms
