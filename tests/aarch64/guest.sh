#!/bin/bash
# The aarch64 checks, run by `scripts/aarch64-vm test` inside the arm64 machine as the
# unprivileged user. /share holds src/ (this checkout) and images/*.tar (OCI archives).
# Prints one "ok: ..." line per check; exits non-zero at the first failure.
set -euo pipefail
say() { printf '%s %s\n' "$1" "${*:2}"; }
ok() { say "ok:" "$@"; }
fail() { say "FAIL:" "$@"; exit 1; }

say "guest:" "$(uname -m) $(uname -r), $(python3 --version), uid $(id -u)"
[ "$(uname -m)" = aarch64 ] || fail "not an aarch64 machine"
[ "$(id -u)" != 0 ] || fail "must run unprivileged"

# `pip install .`: the dependencies are Debian's python3-* packages; the build backend
# (setuptools>=77, newer than Debian's) comes from PyPI (the machine runs with --net)
cp -r /share/src /tmp/src
python3 -m venv --system-site-packages ~/venv
~/venv/bin/pip install -q --no-deps /tmp/src > /tmp/pip.log 2>&1 \
    || { cat /tmp/pip.log; fail "pip install ."; }
export PATH=$HOME/venv/bin:$PATH
ocirun --help > /dev/null || fail "ocirun --help"
ok "pip install ."

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

# the engine's and the runner's tests that need no fixture built on the x86_64 host
cd /tmp/src
python3 -m pytest -q -p no:cacheprovider --timeout=600 -o tmp_path_retention_policy=none \
    tests/layers/test_unpack.py tests/layers/test_store.py tests/layers/test_hostile.py \
    tests/layers/test_compression.py tests/registry/test_platform.py \
    tests/runner/test_cow.py tests/runner/test_plan.py tests/path/test_translator.py \
    tests/path/test_openat2.py || fail "pytest"
ok "pytest subset"
