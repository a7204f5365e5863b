"""`ocirun proot -q QEMU`: real arm64/armhf programs under real QEMU, through the engine.

binfmt_misc must not run these programs (test_binfmt.py checks it; the first test
here shows the engine refuses them without -q), so every success below went
through ocirun's QEMU path.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers import assert_one_line_error, run_ocirun
from tests.qemu.binfmt import exec_succeeds_untraced

STATIC = "qemu-aarch64-static"
DYNAMIC = "qemu-aarch64"  # Debian's qemu-user: a dynamically linked build
QEMUS = [STATIC, DYNAMIC]
SYS = ["-b", "/proc", "-b", "/dev"]


def proot(root: Path | str, *args: str, qemu: str | None = STATIC, env=None, timeout: float = 180.0):
    q = ["-q", qemu] if qemu else []
    return run_ocirun("proot", "-r", str(root), *q, *args, env=env, timeout=timeout)


def ok(cp) -> str:
    assert cp.returncode == 0, f"exit {cp.returncode}\nstdout: {cp.stdout!r}\nstderr: {cp.stderr!r}"
    return cp.stdout


@pytest.fixture(autouse=True)
def _no_binfmt(busybox_arm64_binary):
    assert not exec_succeeds_untraced(str(busybox_arm64_binary)), "binfmt_misc runs arm64 programs: tests prove nothing"


def test_without_q_a_foreign_program_does_not_run(busybox_arm64_rootfs):
    cp = proot(busybox_arm64_rootfs, "/bin/sh", "-c", "echo ran", qemu=None)
    assert cp.returncode != 0 and "ran" not in cp.stdout


@pytest.mark.parametrize("qemu", QEMUS)
def test_arm64_busybox_shell(busybox_arm64_rootfs, qemu):
    out = ok(proot(busybox_arm64_rootfs, *SYS, "/bin/sh", "-c", "uname -m; echo $0; ls / | wc -l", qemu=qemu))
    lines = out.split()
    assert lines[0] == "aarch64" and lines[1] == "/bin/sh" and int(lines[2]) > 5


def test_armhf_busybox(busybox_armhf_rootfs):
    out = ok(proot(busybox_armhf_rootfs, "/bin/sh", "-c", "uname -m; echo armhf-ok", qemu="qemu-arm-static"))
    assert out.split() == ["armv7l", "armhf-ok"]


def test_qemu_arguments_are_kept(busybox_arm64_rootfs):
    """-q 'qemu-aarch64-static -strace' really reaches QEMU (its syscall log shows up on stderr)."""
    cp = proot(busybox_arm64_rootfs, "/bin/echo", "traced", qemu=f"{STATIC} -strace")
    assert ok(cp) == "traced\n" and "write(1," in cp.stderr


def test_exit_status_and_argv0(busybox_arm64_rootfs):
    assert proot(busybox_arm64_rootfs, "/bin/sh", "-c", "exit 7").returncode == 7
    # busybox picks the applet from argv[0]: QEMU's -0 must carry it
    assert ok(proot(busybox_arm64_rootfs, "/usr/bin/basename", "/a/b/c")) == "c\n"
    assert ok(proot(busybox_arm64_rootfs, "/bin/sh", "-c", "echo $0")) == "/bin/sh\n"


def test_proc_self_exe_names_the_guest_program(busybox_arm64_rootfs):
    out = ok(proot(busybox_arm64_rootfs, *SYS, "/bin/sh", "-c",
                   "readlink /proc/self/exe; sh -c 'readlink /proc/$PPID/exe'; cat /proc/self/cmdline | tr '\\0' ' '"))
    lines = out.splitlines()
    assert lines[0] == "/bin/busybox" and lines[1] == "/bin/busybox"
    assert lines[2].split() == ["cat", "/proc/self/cmdline"]  # the guest's argv, not QEMU's


def test_shebang_with_foreign_interpreter_and_nested_shells(busybox_arm64_rootfs):
    script = busybox_arm64_rootfs / "hello.sh"
    script.write_text("#!/bin/sh -e\necho \"script $0 $1 $(uname -m)\"\nsh -c 'sh -c \"echo nested\"'\n")
    script.chmod(0o755)
    out = ok(proot(busybox_arm64_rootfs, "/hello.sh", "arg1"))
    assert out.splitlines() == ["script /hello.sh arg1 aarch64", "nested"]


def test_host_rootfs_and_mixed_mode(busybox_arm64_rootfs):
    out = ok(proot(busybox_arm64_rootfs, "/bin/sh", "-c",
                   "uname -m; /host-rootfs/usr/bin/uname -m; /host-rootfs/bin/busybox uname -m"))
    assert out.split() == ["aarch64", os.uname().machine, os.uname().machine]


@pytest.mark.parametrize("qemu", QEMUS)
def test_guest_ld_variables_reach_the_guest_not_qemu(busybox_arm64_rootfs, qemu):
    env = {"LD_LIBRARY_PATH": "/guest/lib", "LD_BIND_NOW": "1"}
    out = ok(proot(busybox_arm64_rootfs, "/bin/sh", "-c", "echo $LD_LIBRARY_PATH $LD_BIND_NOW", qemu=qemu, env=env))
    assert out.split() == ["/guest/lib", "1"]
    # set inside the guest: the next exec's QEMU (and a dynamic QEMU's host loader) must not act on them
    cp = proot(busybox_arm64_rootfs, "/usr/bin/env", "LD_DEBUG=files", "LD_PRELOAD=/nonexistent.so",
               "/bin/sh", "-c", "echo $LD_PRELOAD $LD_DEBUG", qemu=qemu)
    assert ok(cp).split() == ["/nonexistent.so", "files"]
    assert "ld.so" not in cp.stderr and "link map" not in cp.stderr, cp.stderr[:2000]


def test_missing_qemu_is_one_line_and_125(busybox_arm64_rootfs):
    cp = proot(busybox_arm64_rootfs, "/bin/true", qemu="qemu-nonexistent-static")
    assert "qemu-nonexistent-static" in assert_one_line_error(cp, 125)


# --- the arm64 Debian tree -------------------------------------------------------------


@pytest.mark.parametrize("qemu", QEMUS)
def test_debian_arm64_bash_and_coreutils(debian_arm64_rootfs, qemu):
    out = ok(proot(debian_arm64_rootfs, *SYS, "/bin/bash", "-c",
                   'echo "$BASH_VERSION"; uname -m; ls /usr | sort | head -3; readlink /proc/self/exe; '
                   "cat /etc/debian_version | cut -d. -f1; seq 3 | tr '\\n' ' '", qemu=qemu))
    lines = out.splitlines()
    assert lines[0].startswith("5.2") and lines[1] == "aarch64", out
    assert lines[2:5] == ["bin", "games", "include"] or "bin" in lines[2:5]
    assert lines[5] == "/usr/bin/readlink" and lines[6] == "12" and lines[7].split() == ["1", "2", "3"]


def test_debian_arm64_reexec_of_proc_self_exe(debian_arm64_rootfs):
    out = ok(proot(debian_arm64_rootfs, *SYS, "/bin/bash", "-c",
                   'exec /proc/self/exe -c "echo reexec \\$(uname -m) \\$(readlink /proc/\\$\\$/exe)"'))
    assert out.split() == ["reexec", "aarch64", "/usr/bin/bash"]


def test_debian_arm64_dpkg_and_apt(debian_arm64_rootfs):
    out = ok(proot(debian_arm64_rootfs, *SYS, "/bin/bash", "-c",
                   "dpkg --print-architecture; dpkg -l coreutils | tail -1 | awk '{print $1, $2, $4}'; "
                   "apt-get --version | head -1", timeout=300))
    lines = out.splitlines()
    assert lines[0] == "arm64"
    assert lines[1].startswith("ii coreutils") and lines[1].endswith("arm64")
    assert lines[2].startswith("apt ") and "(arm64)" in lines[2]


def test_debian_arm64_with_a_bound_host_make(debian_arm64_rootfs, tmp_path):
    """PRoot's own example: `-b /usr/bin/make`: host make (native) runs guest shells (emulated)."""
    if not os.path.exists("/usr/bin/make"):
        pytest.fail("host make missing (Debian's make package)", pytrace=False)
    (tmp_path / "Makefile").write_text("all:\n\t@uname -m\n\t@echo from-$$(basename $$(readlink /proc/self/exe))\n")
    out = ok(proot(debian_arm64_rootfs, *SYS, "-b", "/usr/bin/make", "-b", f"{tmp_path}:/work", "-w", "/work",
                   "/bin/bash", "-c", "make --version | head -1; make -s"))
    lines = out.splitlines()
    assert lines[0].startswith("GNU Make") and lines[1] == "aarch64" and lines[2] == "from-readlink"


def test_debian_arm64_python_free_perl_script(debian_arm64_rootfs, tmp_path):
    """A shebang script whose interpreter is a foreign, dynamically linked program (perl)."""
    (tmp_path / "p.pl").write_text("#!/usr/bin/perl -w\nuse Config; print \"$Config{archname} $ARGV[0]\\n\";\n")
    (tmp_path / "p.pl").chmod(0o755)
    out = ok(proot(debian_arm64_rootfs, *SYS, "-b", f"{tmp_path}:/work", "/work/p.pl", "x"))
    assert out.split() == ["aarch64-linux-gnu-thread-multi", "x"]


# --- 386 guests: the kernel runs them and the engine traces their ABI (arch.NATIVE_ON) ----------


def _i386_tree(tmp_path: Path) -> Path:
    from tests.qemu.tinyelf import i386_cat

    root = tmp_path / "i386-root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/marker").write_text("guest-marker\n")
    prog = root / "cat386"
    prog.write_bytes(i386_cat("/etc/marker"))
    prog.chmod(0o755)
    return root


@pytest.mark.parametrize("qemu", [None, STATIC])
def test_i386_program_runs_natively_with_guest_paths(tmp_path, qemu):
    """An i386 ELF is a host program on x86_64 (as in PRoot): traced natively, with or
    without -q; its int 0x80 open of /etc/marker is translated into the guest."""
    from ocirun.engine.qemu import qemu_for_platform

    assert qemu_for_platform("linux/386") is None
    root = _i386_tree(tmp_path)
    assert not (Path("/etc/marker")).exists()
    assert ok(proot(root, "/cat386", qemu=qemu)) == "guest-marker\n"


@pytest.mark.parametrize("platform,target", [("linux/riscv64", "riscv64"), ("linux/s390x", "s390x"),
                                             ("linux/ppc64le", "ppc64le")])
def test_other_architectures_through_their_qemu(tmp_path, platform, target):
    """Hand-assembled programs (tinyelf.py) read a guest file with their own syscall ABI."""
    from ocirun.engine.qemu import qemu_for_platform
    from tests.qemu.tinyelf import cat64

    root = _i386_tree(tmp_path)
    prog = root / "cat64"
    prog.write_bytes(cat64(target, "/etc/marker"))
    prog.chmod(0o755)
    assert not exec_succeeds_untraced(str(prog), ()), f"the kernel runs {target} programs by itself"
    qemu = qemu_for_platform(platform)
    assert qemu and f"qemu-{target}" in qemu[0]
    assert ok(proot(root, "/cat64", qemu=" ".join(qemu))) == "guest-marker\n"


def test_qemu_composes_with_kernel_release_and_fake_root(debian_arm64_rootfs):
    """QEMU answers uname from the host's (already rewritten) one and asks getuid like any program."""
    out = ok(proot(debian_arm64_rootfs, "-k", "9.9.9", "-0", "/bin/bash", "-c", "uname -rm; id -u; id -un"))
    assert out.split() == ["9.9.9", "aarch64", "0", "root"]


def test_without_seccomp_too(busybox_arm64_rootfs, qemu=STATIC):
    """The engine's stop-on-every-syscall fallback runs QEMU the same way."""
    out = ok(proot(busybox_arm64_rootfs, *SYS, "/bin/sh", "-c", "uname -m; readlink /proc/self/exe", qemu=qemu,
                   env={"OCIRUN_NO_SECCOMP": "1"}))
    assert out.split() == ["aarch64", "/bin/busybox"]
