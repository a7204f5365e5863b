#!/usr/bin/env bash
# Serve a web page from a container on an unprivileged port, as `docker run -p 8080:80`.
#
#   examples/web-server.sh [PORT] [SITE_DIR]      # then: curl http://127.0.0.1:PORT/
#   ocirun rm -f web                              # stop it
#
# busybox httpd listens on port 80 *inside* the container; ocirun's port map
# makes that bind land on PORT on the host, so no privilege is needed.
# Environment: IMAGE (default busybox), OCIRUN (default: ocirun), NAME (default web).
set -eu
PORT=${1:-8080}
SITE=${2:-}
IMAGE=${IMAGE:-busybox}
OCIRUN=${OCIRUN:-ocirun}
NAME=${NAME:-web}
if [ -z "$SITE" ]; then
    SITE=$(mktemp -d "${TMPDIR:-/tmp}/ocirun-site.XXXXXX")
    echo "<h1>Hello from a rootless container</h1>" >"$SITE/index.html"
    chmod 755 "$SITE"
fi
$OCIRUN run -d --rm --name "$NAME" -p "$PORT:80" -v "$SITE:/www:ro" "$IMAGE" \
    busybox httpd -f -p 80 -h /www >/dev/null
# wait until it answers
i=0
while [ $i -lt 100 ]; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
        break
    fi
    i=$((i + 1)); sleep 0.1
done
echo "serving $SITE at http://127.0.0.1:$PORT/ (container $NAME; stop with: $OCIRUN rm -f $NAME)"
