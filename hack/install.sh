#!/usr/bin/env bash
# Installs crius on this machine (Debian 12, as root, from the source tree):
#   - the Debian packages it needs to build and run (apt, only what is missing),
#   - the release binary as /usr/local/bin/crius (replaced by rename, so a
#     running daemon and its monitors are never written into),
#   - /etc/crius/config.toml (`crius config default`) and /etc/crictl.yaml,
#     each only if missing,
#   - with systemd as PID 1: hack/crius.service as
#     /etc/systemd/system/crius.service, enabled and (re)started; without
#     systemd (containers, CI): `crius serve` in the background, logging to
#     /var/log/crius/crius.log.
# Re-running it upgrades: running containers keep running (their monitors
# are not children of the daemon, and the unit has KillMode=process).
#   bash hack/install.sh
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=/usr/local/bin/crius
UNIT=/etc/systemd/system/crius.service
CONF=/etc/crius/config.toml
SOCK=/run/crius/crius.sock
LOG=/var/log/crius/crius.log

log() { echo "install.sh: $*"; }
die() { echo "install.sh: error: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root (crius manages namespaces, mounts and cgroups)"
command -v cargo >/dev/null || die "cargo is missing: install a Rust toolchain >= 1.85 (edition 2024), e.g. with rustup"

# Build: protoc compiles the CRI proto inside the k8s-cri crate; libcontainer's
# seccomp support links libseccomp, found through pkg-config.
# Run: CNI plugins for pod networking, iptables for port mappings.
pkgs=(protobuf-compiler libseccomp-dev pkg-config containernetworking-plugins iptables)
missing=()
for p in "${pkgs[@]}"; do
  [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" = installed ] || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

log "building crius (release)"
cargo build --release --locked
install -m 0755 "${CARGO_TARGET_DIR:-target}/release/crius" "$BIN.new"
mv -f "$BIN.new" "$BIN"
log "installed $BIN ($("$BIN" version))"

mkdir -p "$(dirname "$CONF")"
if [ ! -e "$CONF" ]; then
  "$BIN" config default >"$CONF.new"
  mv "$CONF.new" "$CONF"
  log "wrote the default config to $CONF"
fi
"$BIN" config check --config "$CONF" >/dev/null || die "$CONF is not a valid crius config (see above)"

if [ ! -e /etc/crictl.yaml ]; then
  cat >/etc/crictl.yaml <<'YAML'
runtime-endpoint: unix:///run/crius/crius.sock
image-endpoint: unix:///run/crius/crius.sock
timeout: 10
debug: false
pull-image-on-create: false
YAML
  log "wrote /etc/crictl.yaml (crictl → unix://$SOCK)"
fi

# A working pod network out of the box: a bridge conflist in cni.conf_dir,
# written only when that directory has no network config yet.
"$BIN" config cni-default --config "$CONF"

wait_for_socket() {
  for _ in $(seq 100); do
    [ -S "$SOCK" ] && return 0
    sleep 0.1
  done
  return 1
}

if [ -d /run/systemd/system ]; then
  # systemd is PID 1 (sd_booted's test).
  install -m 0644 hack/crius.service "$UNIT"
  systemctl daemon-reload
  systemctl enable crius.service
  if systemctl is-active --quiet crius.service; then
    log "restarting crius.service (containers keep running)"
    systemctl restart crius.service
  else
    systemctl start crius.service
  fi
  wait_for_socket || { systemctl status --no-pager crius.service >&2 || true; die "crius did not create $SOCK (journalctl -u crius)"; }
  log "crius.service is serving on unix://$SOCK (logs: journalctl -u crius)"
  exit 0
fi

# No systemd: stop the daemon this script started before, then start anew.
# Only `crius serve` running $BIN (replaced above, so its exe now reads
# "$BIN (deleted)") is stopped: monitors are `crius` processes too and each
# owns a running container, and other daemons (tests) use other binaries.
for pid in $(pgrep -x crius || true); do
  exe=$(readlink "/proc/$pid/exe" 2>/dev/null || true)
  arg1=$(tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | sed -n 2p || true)
  if [ "$arg1" = serve ] && { [ "$exe" = "$BIN" ] || [ "$exe" = "$BIN (deleted)" ]; }; then
    log "stopping the running crius serve (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
done

mkdir -p "$(dirname "$LOG")"
log "starting crius serve (no systemd; log: $LOG)"
setsid "$BIN" serve --config "$CONF" >>"$LOG" 2>&1 </dev/null &
wait_for_socket || { tail -n 20 "$LOG" >&2; die "crius did not start"; }
log "crius is serving on unix://$SOCK"
