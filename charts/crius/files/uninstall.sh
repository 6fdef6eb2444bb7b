#!/bin/sh
# crius node uninstaller: runs in the DaemonSet's init container when the
# chart's mode is "uninstall". Stops and disables crius.service and removes
# the binary and the unit from the host. State (/var/lib/crius) and
# containers crius started are left alone: drain the node and point kubelet
# at another runtime first (docs/operations.md).
set -eu

HOST_ROOT=${HOST_ROOT:-/host}
BIN=/usr/local/bin/crius
UNIT=/etc/systemd/system/crius.service
CONF=/etc/crius/config.toml

log() { echo "crius-uninstaller: $*"; }
die() {
    echo "crius-uninstaller: error: $*" >&2
    exit 1
}
host() { nsenter -t 1 -m -u -i -n -p -- "$@"; }

pid1=$(cat /proc/1/comm 2>/dev/null || echo unknown)
[ "$pid1" = systemd ] || die "the host's PID 1 is '$pid1', not systemd (is hostPID set?)"

if [ -e "$HOST_ROOT$UNIT" ]; then
    host systemctl disable --now crius.service || die "systemctl disable --now crius.service failed"
    rm -f "$HOST_ROOT$UNIT"
    host systemctl daemon-reload
    host systemctl reset-failed crius.service 2>/dev/null || true
    log "stopped, disabled and removed crius.service"
fi
# The daemon's read-only bind of its own binary (what monitors run from);
# busy while containers crius started still run, then it stays.
host umount /run/crius/crius 2>/dev/null || true
if [ -e "$HOST_ROOT$BIN" ]; then
    rm -f "$HOST_ROOT$BIN"
    log "removed $BIN"
fi
# Only a config this chart wrote (its first line says so) is removed.
if [ "${CRIUS_REMOVE_CONFIG:-true}" = true ] && [ -f "$HOST_ROOT$CONF" ] &&
    head -n 1 "$HOST_ROOT$CONF" | grep -q '^# Managed by the crius Helm chart'; then
    rm -f "$HOST_ROOT$CONF"
    log "removed $CONF"
fi
log "crius is not installed on this node; /var/lib/crius and /run/crius were kept"
