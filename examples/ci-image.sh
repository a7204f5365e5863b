#!/bin/sh
# CI job: build an image from a Dockerfile, test it, push it - no root, no daemon.
#
#   examples/ci-image.sh [DEST]        DEST: where to push, e.g. registry.example.com/team/app:1
#
# Without DEST nothing is pushed. Credentials come from `ocirun login` (or docker's
# config.json). Environment: IMAGE (the base image, default debian:12),
# OCIRUN (default: ocirun), OCIRUN_ROOT (the store, e.g. the CI cache directory:
# a second run of the job finds every step in the build cache).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
OCIRUN=${OCIRUN:-ocirun}
IMAGE=${IMAGE:-debian:12}
name=ci-image:build-$$

# 1. build (docker's syntax; SOURCE_DATE_EPOCH, if set, makes the digests reproducible)
$OCIRUN build --build-arg "BASE=$IMAGE" -t "$name" "$here/ci-image"

# 2. test: the image's own test script, in a throw-away container
$OCIRUN run --rm "$name" /opt/app/test.sh

# 3. push under its real name
if [ $# -ge 1 ]; then
    $OCIRUN tag "$name" "$1"
    $OCIRUN push "$1"
fi
$OCIRUN rmi "$name" >/dev/null
