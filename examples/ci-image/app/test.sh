#!/bin/sh
# The image's own test: what the CI job runs before pushing.
set -e
out=$(/opt/app/greet.sh ci)
[ "$out" = "hello from the CI image (ci)" ] || { echo "test.sh: unexpected output: $out" >&2; exit 1; }
echo "test.sh: ok"
