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
    python3-venv                # the venv holding helm-python-sdk (Helm's engine) for tests/chart.rs
    shellcheck                  # tests/chart.rs lints the chart's installer scripts
    systemd                     # systemd-analyze: tests/chart.rs verifies hack/crius.service
)

# PyPI packages for tests/chart.rs, in their own venv: Helm is not packaged in
# Debian 12, and helm-python-sdk embeds Helm v4's Go library (template engine,
# values.schema.json validation, lint), so the chart is rendered by Helm itself.
HELM_VENV=${CRIUS_HELM_VENV:-/opt/crius-tools/helm-venv}
HELM_PIP=(helm-python-sdk==0.2.2 PyYAML==6.0.2)

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

# Creates the helm venv when it is missing or lacks the packages; quiet when
# it is already complete.
install_helm_venv() {
    if "$HELM_VENV/bin/python" -c 'import helm_python, yaml' >/dev/null 2>&1; then
        return 0
    fi
    [[ $(id -u) -eq 0 ]] || die "$HELM_VENV is missing; run this script as root to create it"
    echo "install-deps: creating $HELM_VENV with ${HELM_PIP[*]}"
    # Debian's python3 (not one a version manager put first on PATH).
    /usr/bin/python3 -m venv "$HELM_VENV" || die "/usr/bin/python3 -m venv $HELM_VENV failed (package python3-venv)"
    "$HELM_VENV/bin/pip" install -q --disable-pip-version-check "${HELM_PIP[@]}" ||
        die "pip install ${HELM_PIP[*]} into $HELM_VENV failed (network to PyPI?)"
    "$HELM_VENV/bin/python" -c 'import helm_python, yaml' ||
        die "$HELM_VENV cannot import helm_python after pip install"
}

if [[ ${#missing[@]} -eq 0 ]]; then
    echo "install-deps: all packages present: ${PACKAGES[*]}"
    install_helm_venv
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
install_helm_venv
