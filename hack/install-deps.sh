#!/usr/bin/env bash
# Installs the Debian 12 packages crius needs to build and to run its test
# suite. Idempotent: packages already present are left alone, and the apt
# index is only refreshed when something has to be installed. Run as root.
# The Rust toolchain itself is assumed present (rustup / cargo on PATH).
set -euo pipefail

PACKAGES=(
    protobuf-compiler           # protoc: k8s-cri generates the CRI v1 types at build time
    libseccomp-dev              # libcontainer's libseccomp feature links -lseccomp
    pkg-config                  # libseccomp-sys finds libseccomp through it
    docker-registry             # the loopback registry the image tests push to and pull from
    busybox-static              # /bin/busybox: the one binary inside every test image
    apache2-utils               # htpasswd: bcrypt credentials for the auth registry
    containernetworking-plugins # CNI plugins for pod networking tests
    runc                        # OCI runtime for container tests
    jq
    openssl                     # tests make a self-signed certificate for the streaming server
    iproute2                    # ip: test network namespaces, links and routes
    iptables                    # the portmap CNI plugin's DNAT rules
    util-linux                  # nsenter: tests look inside pod namespaces
    containerd                  # the peer the benchmarks compare against
    zstd
    qemu-system-x86             # cgroup v2 tests run in a qemu guest booted with cgroup_no_v1=all
    cpio                        # builds that guest's initramfs
    kmod
    xz-utils
)

die() {
    echo "install-deps: error: $*" >&2
    exit 1
}

if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
    die "this script needs a Debian (12, bookworm) system with dpkg and apt-get"
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
    if [[ "$status" != "installed" ]]; then
        missing+=("$pkg")
    fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
    echo "install-deps: all packages present: ${PACKAGES[*]}"
    exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
    die "missing packages (${missing[*]}); run this script as root to install them"
fi

export DEBIAN_FRONTEND=noninteractive
echo "install-deps: missing: ${missing[*]}"
echo "install-deps: apt-get update"
apt-get update -q || die "apt-get update failed (network or apt sources?)"
echo "install-deps: apt-get install -y --no-install-recommends ${missing[*]}"
apt-get install -y -q --no-install-recommends "${missing[@]}" ||
    die "apt-get install failed for: ${missing[*]}"

for pkg in "${missing[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
    [[ "$status" == "installed" ]] || die "package $pkg is still not installed after apt-get install"
done
echo "install-deps: installed: ${missing[*]}"
