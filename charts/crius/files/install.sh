#!/bin/sh
# crius node installer: runs in the DaemonSet's init container (busybox sh
# from the crius image) with hostPID and privileges. Copies the crius binary
# and crius.service onto the host, installs the rendered config, and starts
# crius through the host's systemd. Re-running it (a DaemonSet rollout) is an
# upgrade: crius is restarted only when something changed, and
# KillMode=process keeps running containers alive across the restart.
set -eu

HOST_ROOT=${HOST_ROOT:-/host}
BIN=/usr/local/bin/crius
UNIT=/etc/systemd/system/crius.service
CONF=/etc/crius/config.toml
SOCK=/run/crius/crius.sock
SRC_BIN=${CRIUS_SRC_BIN:-/usr/local/bin/crius}
SRC_UNIT=${CRIUS_SRC_UNIT:-/usr/share/crius/crius.service}
SRC_CONF=${CRIUS_SRC_CONF:-/config/config.toml}

log() { echo "crius-installer: $*"; }
die() {
    echo "crius-installer: error: $*" >&2
    exit 1
}
# Runs a command on the host: the mount, UTS, IPC, network and PID
# namespaces of the host's PID 1 (the pattern node-level runtime installers use).
host() { nsenter -t 1 -m -u -i -n -p -- "$@"; }

for f in "$SRC_BIN" "$SRC_UNIT" "$SRC_CONF"; do
    [ -f "$f" ] || die "$f is missing from the installer image or its mounts"
done
pid1=$(cat /proc/1/comm 2>/dev/null || echo unknown)
[ "$pid1" = systemd ] ||
    die "the host's PID 1 is '$pid1', not systemd (is hostPID set?); install crius with hack/install.sh on such hosts"

# Stage next to the targets (same file system), so the final step is a rename:
# the running daemon's binary is never written in place.
install -m 0755 "$SRC_BIN" "$HOST_ROOT$BIN.new"
install -m 0644 "$SRC_UNIT" "$HOST_ROOT$UNIT.new"
install -m 0644 "$SRC_CONF" "$HOST_ROOT$CONF.new"

# The new binary must accept the new config before anything is replaced; on
# failure the old crius keeps running untouched.
if ! out=$(host "$BIN.new" config check --config "$CONF.new" 2>&1 >/dev/null); then
    rm -f "$HOST_ROOT$BIN.new" "$HOST_ROOT$UNIT.new" "$HOST_ROOT$CONF.new"
    die "the rendered config.toml was rejected by crius on this node: $out"
fi

changed=
for f in "$BIN" "$UNIT" "$CONF"; do
    if cmp -s "$HOST_ROOT$f.new" "$HOST_ROOT$f"; then
        rm -f "$HOST_ROOT$f.new"
    else
        mv -f "$HOST_ROOT$f.new" "$HOST_ROOT$f"
        changed="$changed $f"
        log "installed $f"
    fi
done

host systemctl daemon-reload
host systemctl enable crius.service
if [ -n "$changed" ] && host systemctl is-active --quiet crius.service; then
    log "restarting crius.service (changed:$changed); containers keep running"
    host systemctl restart crius.service
else
    host systemctl start crius.service
fi

if [ "${CRIUS_CNI_DEFAULT:-false}" = true ]; then
    if host "$BIN" config cni-default --help >/dev/null 2>&1; then
        host "$BIN" config cni-default --config "$CONF"
    else
        log "this crius has no 'config cni-default'; no default CNI config written"
    fi
fi

timeout=${CRIUS_START_TIMEOUT:-60}
i=0
while [ ! -S "$SOCK" ]; do
    i=$((i + 1))
    if [ "$i" -gt "$timeout" ]; then
        host systemctl status --no-pager crius.service >&2 || true
        die "crius did not create $SOCK within ${timeout}s (journalctl -u crius on the node)"
    fi
    sleep 1
done
log "$(host "$BIN" version) is serving unix://$SOCK"
