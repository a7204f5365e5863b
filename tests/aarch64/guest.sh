#!/bin/bash
# The aarch64 checks, run by `scripts/aarch64-vm test` inside the arm64 machine as the
# unprivileged user. /share holds src/ (this checkout) and images/*.tar (OCI archives).
# Prints one "ok: ..." or "FAIL: ..." line per check and goes on (a check that cannot
# run without an earlier one stops there); exits non-zero if any check failed.
set -uo pipefail
say() { printf '%s %s\n' "$1" "${*:2}"; }
FAILED=0 SECTION_FAILED=0
ok() {  # closes a section: "ok" if none of its checks failed
    if [ $SECTION_FAILED = 0 ]; then say "ok:" "$@"; else say "not ok:" "$@"; fi
    SECTION_FAILED=0
}
fail() { say "FAIL:" "$@"; FAILED=1 SECTION_FAILED=1; return 1; }
die() { say "FAIL:" "$@"; exit 1; }
trap 'exit $FAILED' EXIT

say "guest:" "$(uname -m) $(uname -r), $(python3 --version), uid $(id -u)"
[ "$(uname -m)" = aarch64 ] || die "not an aarch64 machine"
[ "$(id -u)" != 0 ] || die "must run unprivileged"

# `pip install .`: Debian's python3-* packages serve what they can; the rest (oras,
# python-ptrace) and the build backend (setuptools>=77, newer than Debian's) are wheels
# the host fetched into /share/wheels, else PyPI (the machine runs with --net)
t0=$SECONDS
cp -r /share/src /tmp/src
python3 -m venv --system-site-packages ~/venv
~/venv/bin/pip install -q --no-index --find-links /share/wheels /tmp/src > /tmp/pip.log 2>&1 \
    || ~/venv/bin/pip install -q /tmp/src >> /tmp/pip.log 2>&1 || { cat /tmp/pip.log; die "pip install ."; }
export PATH=$HOME/venv/bin:$PATH
ocirun --help > /dev/null || die "ocirun --help"
ok "pip install . ($((SECONDS - t0))s)"

# the store on ext4 (user xattrs) and on the guest's /tmp (tmpfs, Linux 6.1: no user xattrs)
for store in "$HOME/store" /tmp/store; do
    out=$(ocirun --root "$store" load -i /share/images/busybox.tar) || fail "load into $store"
    id=$(sed -n 's/^Loaded image[^:]*: //p' <<< "$out" | head -1)
    ocirun --root "$store" images | grep -q linux/arm64 || fail "the arm64 image was not chosen"
    cid=$(ocirun --root "$store" create --name lazy "$id" true) || fail "create in $store"
    rootfs=$store/containers/$cid/rootfs
    [ -d "$rootfs/bin" ] && [ "$(ls -A "$rootfs/bin")" = "" -o -e "$rootfs/bin/.ocirun-lazy" ] \
        || fail "the container tree in $store is not lazy: $(ls -A "$rootfs/bin" | head -3)"
    ok "load + lazy create, store on $(stat -f -c %T "$store")"
done

# the engine's tests on a busybox-static tree and the host's own programs (errno
# contract, paths and bindings, signals and job control, SIGSYS answers, the proot
# command line), in the seccomp mode (the ptrace-only mode doubles the time), and the
# runner's and the path layer's tests that matter on another architecture and on a
# tmpfs; not the ones that need the x86_64 host's cached Debian tree or PRoot 5.4
t0=$SECONDS
cd /tmp/src
python3 -m pytest -q -p no:cacheprovider --timeout=600 -o tmp_path_retention_policy=none \
    --basetemp "$HOME/pytest-tmp" -k "not no-seccomp" \
    tests/engine/test_fidelity_kernel.py tests/engine/test_fidelity_paths.py \
    tests/engine/test_signals.py tests/engine/test_fidelity_cli.py tests/engine/test_sigsys.py \
    --deselect tests/engine/test_fidelity_cli.py::test_q_takes_any_command_with_prootss_argv \
    --deselect tests/engine/test_sigsys.py::test_fake_root_set_ids_and_chown \
    --deselect tests/engine/test_sigsys.py::test_ln_under_link2symlink \
    --deselect tests/engine/test_sigsys.py::test_calls_with_a_fallback_fail_with_enosys \
    --deselect tests/engine/test_sigsys.py::test_clone3_trapped_threads_fall_back \
    --deselect tests/extensions/test_statbuf.py::test_stat64_of_an_i386_caller_from_the_host_stat \
    tests/layers/test_unpack.py tests/registry/test_platform.py tests/runner/test_cow.py \
    tests/runner/test_plan.py tests/path/test_translator.py tests/path/test_openat2.py \
    tests/extensions/test_statbuf.py || fail "pytest"
ok "pytest subset ($((SECONDS - t0))s)"

# the engine on the host's own root: -0 (the fake root answers stats with aarch64's
# struct stat), -b, -w
t0=$SECONDS
[ "$(ocirun proot -0 -r / id -u)" = 0 ] || fail "-0: id -u"
[ "$(ocirun proot -0 -r / stat -c %U "$HOME")" = root ] || fail "-0: the user's files owned by root"
out=$(ocirun proot -0 -r / sh -c 'f=$(mktemp) && chown 12:34 "$f" && mknod "$f.c" c 1 3 &&
      stat -c "%u:%g %F" "$f" "$f.c"; rm -f "$f" "$f.c"') || fail "-0: chown/mknod: $out"
[ "$out" = "12:34 regular empty file
0:0 character special file" ] || fail "-0: chown/mknod seen as: $out"
mkdir -p /tmp/bound && echo hi > /tmp/bound/f
[ "$(ocirun proot -r / -b /tmp/bound:/mnt -w /mnt cat f)" = hi ] || fail "-b/-w"
ok "proot -0 (id, stat, chown, mknod), -b, -w ($((SECONDS - t0))s)"

# a Debian arm64 image: containers, the fake root of `ocirun run`; an amd64 one
# through qemu-x86_64 (mixed mode)
t0=$SECONDS
S=$HOME/store-debian  # its own store: the images are tagged debian:12 below
for p in linux/arm64 linux/amd64; do
    ocirun --root "$S" pull -q --platform $p oci-archive:/share/images/debian.tar:12 > /dev/null \
        || fail "pull $p from the OCI archive"
done
for id in $(ocirun --root "$S" images | awk '$4 ~ /^linux\// {print $3}'); do
    ocirun --root "$S" tag "$id" debian:12
done
[ "$(ocirun --root "$S" run --rm debian:12 uname -m)" = aarch64 ] || fail "run debian:12"
[ "$(ocirun --root "$S" run --rm debian:12 stat -c %U:%G /etc/shadow)" = root:shadow ] \
    || fail "the fake root in a container"
out=$(ocirun --root "$S" run --rm --platform linux/amd64 debian:12 sh -c 'uname -m; id -u') \
    || fail "amd64 image through QEMU: $out"
[ "$out" = "x86_64
0" ] || fail "amd64 image through QEMU: $out"
ok "debian:12 arm64 and amd64 (QEMU) containers ($((SECONDS - t0))s)"

# SysV IPC emulated, under a seccomp filter that makes the calls fail as on Android
t0=$SECONDS
gcc -O2 -o /tmp/sysvipc tests/cprogs/sysvipc.c || fail "gcc sysvipc.c"
expected=$(/tmp/sysvipc) || fail "sysvipc natively: $expected"
calls=shmget=TRACE,shmat=TRACE,shmdt=TRACE,shmctl=TRACE,semget=TRACE,semop=TRACE
calls=$calls,semtimedop=TRACE,semctl=TRACE,msgget=TRACE,msgsnd=TRACE,msgrcv=TRACE,msgctl=TRACE
out=$(python3 -m tests.helpers.deny "$calls" -- /tmp/sysvipc) && fail "the filter refused nothing"
[ "$out" = "FAIL shmget: ENOSYS" ] || fail "the filter: $out"
out=$(python3 -m tests.helpers.deny "$calls" -- ocirun proot -r / /tmp/sysvipc 2>&1) \
    || fail "sysvipc under emulation: $out"
[ "$out" = "$expected" ] || fail "sysvipc under emulation printed: $out"
# the same calls answered with SIGSYS, as Android's app filter does (ocirun/engine/sigsys.py)
calls=${calls//TRACE/TRAP}
{ python3 -m tests.helpers.deny "$calls" -- /tmp/sysvipc; } > /dev/null 2>&1  # (bash's notice too)
[ $? = 159 ] || fail "the SIGSYS filter did not kill the program natively"
out=$(python3 -m tests.helpers.deny "$calls" -- ocirun proot -r / /tmp/sysvipc 2>&1) \
    || fail "sysvipc trapped with SIGSYS, under emulation: $out"
[ "$out" = "$expected" ] || fail "sysvipc trapped with SIGSYS, under emulation, printed: $out"
ok "SysV IPC emulated under an Android-like filter, calls failing and trapped ($((SECONDS - t0))s)"

# last: the slowest check, and the only one that needs Debian's archive
if [ "${OCIRUN_A64_APT:-1}" = 1 ]; then
    t0=$SECONDS
    out=$(ocirun --root "$S" run --rm debian:12 sh -c \
        'apt-get -qq update && apt-get -qq install -y hello > /dev/null && hello' 2>&1) \
        || fail "apt-get install under the fake root: $(tail -5 <<< "$out")"
    [ "$(tail -1 <<< "$out")" = "Hello, world!" ] || fail "apt-get install hello: $out"
    ok "apt-get update + install hello in debian:12 arm64 ($((SECONDS - t0))s)"
fi
