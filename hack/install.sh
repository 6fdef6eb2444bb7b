#!/usr/bin/env bash
# Installs what crius needs on Debian 12, builds it, installs the binary to
# /usr/local/bin and starts `crius serve` on /run/crius/crius.sock with the
# built-in default configuration (or /etc/crius/config.toml if present).
# Run as root from the repository root: bash hack/install.sh
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "install.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root (crius manages namespaces, mounts and cgroups)"
command -v cargo >/dev/null || die "cargo is missing: install a Rust toolchain >= 1.85 (edition 2024), e.g. with rustup"

# Build dependency: protoc compiles the CRI proto inside the k8s-cri crate.
# Runtime: CNI plugins for pod networking, iptables for port mappings.
pkgs=(protobuf-compiler containernetworking-plugins iptables)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install.sh: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

echo "install.sh: building crius (release)"
cargo build --release --locked
install -m 0755 target/release/crius /usr/local/bin/crius

if [ -S /run/crius/crius.sock ] && pgrep -x crius >/dev/null; then
  echo "install.sh: stopping the running crius"
  pkill -TERM -x crius || true
  for _ in $(seq 50); do pgrep -x crius >/dev/null || break; sleep 0.1; done
fi

mkdir -p /var/log/crius
echo "install.sh: starting crius serve (log: /var/log/crius/crius.log)"
setsid /usr/local/bin/crius serve >>/var/log/crius/crius.log 2>&1 < /dev/null &
for _ in $(seq 100); do
  [ -S /run/crius/crius.sock ] && break
  sleep 0.1
done
[ -S /run/crius/crius.sock ] || { tail -n 20 /var/log/crius/crius.log >&2; die "crius did not start"; }
echo "install.sh: crius is serving on unix:///run/crius/crius.sock"
