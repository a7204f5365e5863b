#!/bin/sh
# Run an arm64 image on an x86_64 host: ocirun puts QEMU user-mode in front of
# every arm64 program (no binfmt_misc, no root needed).
#
#   examples/arm64-on-x86.sh [COMMAND...]         # default: a small report
#
# Needs qemu-user-static (or qemu-user) on the host.
# Environment: IMAGE (default debian:12), OCIRUN (default: ocirun).
set -eu
IMAGE=${IMAGE:-debian:12}
OCIRUN=${OCIRUN:-ocirun}
if [ $# -eq 0 ]; then
    set -- sh -c 'echo "machine inside the container: $(uname -m)"; echo "kernel $(uname -r)"; ls /bin | head -3'
fi
exec $OCIRUN run --rm --platform linux/arm64 "$IMAGE" "$@"
