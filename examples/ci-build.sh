#!/bin/sh
# CI job: build and test a C project inside debian:12 on a host without root.
#
#   examples/ci-build.sh [PROJECT_DIR]
#
# The project is bind-mounted at /src; the toolchain is installed with apt-get
# inside a named, reused container (ocirun fakes root for apt/dpkg), so the
# second run of the job starts at `make test` without installing anything.
# Environment: IMAGE (default debian:12), OCIRUN (default: ocirun),
# BUILDER (container name, default ci-builder-$USER), OCIRUN_ROOT (the store).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
project=$(cd "${1:-$here/ci-project}" && pwd)
IMAGE=${IMAGE:-debian:12}
OCIRUN=${OCIRUN:-ocirun}
BUILDER=${BUILDER:-ci-builder-$(id -un)}

# 1. a builder container with gcc and make (created once, kept between jobs)
if ! $OCIRUN exec "$BUILDER" true 2>/dev/null; then
    $OCIRUN rm -f "$BUILDER" >/dev/null 2>&1 || true
    $OCIRUN create --name "$BUILDER" -v "$project:/src" "$IMAGE" true >/dev/null
    $OCIRUN exec -e DEBIAN_FRONTEND=noninteractive "$BUILDER" sh -c \
        'apt-get update -q && apt-get install -y -q --no-install-recommends gcc libc6-dev make' \
        >"${TMPDIR:-/tmp}/ci-builder-apt.log" 2>&1 || {
        echo "ci-build: installing the toolchain failed, see ${TMPDIR:-/tmp}/ci-builder-apt.log" >&2
        exit 1
    }
fi

# 2. the job: build and test in the builder's tree (the project is its /src volume)
$OCIRUN exec -w /src "$BUILDER" sh -c 'make clean >/dev/null && make test'
