#!/bin/sh
# Restarts rakit-websocket without losing a client (SPEC 18; docs/operations.md, "Restarting
# without losing clients"): starts a new daemon beside the running one on the same port, waits
# until it serves, then stops the old one with SIGTERM and waits until it is gone. Its clients
# reconnect to the new daemon at once, and history channels recover what was published
# meanwhile. The config must have [cluster] reuse_port = true and a redis_url.
#
# Run it for the first start too (no daemon is running then). The daemon it starts outlives it.
# RAKIT, CONFIG, RUN (where the pid file and each daemon's stdout live) can be set from outside.
set -eu
RAKIT=${RAKIT:-/usr/local/bin/rakit}
CONFIG=${CONFIG:-/etc/rakit-websocket/websocket.toml}
RUN=${RUN:-/run/rakit-websocket}
mkdir -p "$RUN"
OLD=$(cat "$RUN/pid" 2>/dev/null || true)

# Whether process $1 is a running daemon (not gone, not a zombie, not another program that
# got its pid).
runs() {
    tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -q 'websocket:run'
}

# The new daemon, in its own session: neither this script's end nor its terminal stops it.
setsid "$RAKIT" websocket:run --config="$CONFIG" >"$RUN/starting.out" 2>&1 </dev/null &
NEW=$!
# Ready when its first line, the listen line, is out: with [cluster] it comes once the link to
# Redis is up. If the daemon exits first it did not start (a config error exits 2, a port in
# use 1); the reason is in its output, and the old one keeps running.
until head -n 1 "$RUN/starting.out" | grep -q '^rakit-websocket listening on '; do
    if ! runs "$NEW"; then
        cat "$RUN/starting.out" >&2
        exit 1
    fi
    sleep 0.1
done
# Its stdout (log lines, unless logging_output = "file") goes on into the renamed file.
mv "$RUN/starting.out" "$RUN/$NEW.out"
echo "$NEW" >"$RUN/pid"

# The old daemon (if the pid file names one that still runs) stops accepting, serves what
# was sent to it, closes its clients (1001; 4200 to Pusher clients) and exits within 3 s.
if [ -n "$OLD" ] && runs "$OLD"; then
    kill -TERM "$OLD"
    tries=0
    while runs "$OLD"; do
        tries=$((tries + 1))
        if [ "$tries" -gt 100 ]; then
            echo "the old daemon ($OLD) is still running after 10 s" >&2
            exit 1
        fi
        sleep 0.1
    done
    mv -f "$RUN/$OLD.out" "$RUN/previous.out" 2>/dev/null || true
fi
echo "rakit-websocket $NEW serves; $(head -n 1 "$RUN/$NEW.out")"
