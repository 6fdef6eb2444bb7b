#!/usr/bin/env bash
# Runs the cgroup tests in a pure cgroup v2 world. This host is cgroup v1
# (hybrid), and kubelet >= 1.35 needs v2, so the same test binaries are built
# here and run inside a throw-away QEMU guest booted with cgroup_no_v1=all:
# tests/cgroup.rs (sys::cgroup against cgroupfs) and
# tests/container_resources.rs (containers through the daemon, with a
# registry, CNI bridge and pods inside the guest; loopback is all they need).
#
#   hack/test-cgroup-v2.sh [TEST-ARGS...]     # default: --test-threads=1
#
# TEST-ARGS go to every test binary (a name filter applies to each).
# CRIUS_V2_TESTS overrides the list (default "cgroup container_resources container_stats metrics").
#
# The guest harness is taken from $CRIUS_V2_GUEST (default
# ../shared/v2-guest/run-in-v2-guest.sh, relative to the repo); it shares
# the repo dir into the guest at the same path, so the host-built binaries
# run unchanged. Host packages: qemu-system-x86 busybox-static cpio kmod
# xz-utils, plus what the container tests need on any host (docker-registry,
# containernetworking-plugins, iptables; see hack/install-deps.sh).
# Exit status: the tests' (the first failing binary's); 124 guest timeout;
# 125 harness failure.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
guest=${CRIUS_V2_GUEST:-../shared/v2-guest/run-in-v2-guest.sh}
tests=${CRIUS_V2_TESTS:-cgroup container_resources container_stats metrics}

if [[ ! -f $guest ]]; then
    echo "test-cgroup-v2: no guest harness at $guest; set CRIUS_V2_GUEST" >&2
    exit 125
fi
for tool in qemu-system-x86_64 busybox cpio; do
    if ! command -v "$tool" >/dev/null; then
        echo "test-cgroup-v2: missing $tool;" \
            "apt-get install -y --no-install-recommends qemu-system-x86 busybox-static cpio kmod xz-utils" >&2
        exit 125
    fi
done

# cargo's JSON messages name the executables (one object per line); the
# human "Executable" line is not a stable format.
args=()
for t in $tests; do
    args+=(--test "$t")
done
messages=$(cargo test "${args[@]}" --no-run --message-format=json)
artifact() { # kind name
    grep '"reason":"compiler-artifact"' <<<"$messages" |
        grep "\"kind\":\\[\"$1\"\\],[^{]*\"name\":\"$2\"" |
        sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n 1 || true
}
crius=$(artifact bin crius)
if [[ -z $crius || ! -x $crius ]]; then
    echo "test-cgroup-v2: cargo did not report the crius executable" >&2
    exit 125
fi

# The target dir may be shared with other builds, and the guest reads it
# live over 9p: a rebuild during the (slow, emulated) run would swap the
# binaries under it (a half-written crius dies with SIGSEGV). So run from
# private copies; inside the guest the copy of crius is bind-mounted over
# the path the test binaries have compiled in (CARGO_BIN_EXE_crius). The
# guest sees the host's / read-only, so a host temp dir is visible there.
snap=$(mktemp -d "${TMPDIR:-/var/tmp}/crius-v2.XXXXXX")
trap 'rm -rf "$snap"' EXIT
cp "$crius" "$snap/crius"
script="set -u; mount --bind $(printf %q "$snap/crius") $(printf %q "$crius") || exit 125; rc=0"
for t in $tests; do
    bin=$(artifact test "$t")
    if [[ -z $bin || ! -x $bin ]]; then
        echo "test-cgroup-v2: cargo did not report the tests/$t.rs executable" >&2
        exit 125
    fi
    cp "$bin" "$snap/$t"
    echo "==> tests/$t.rs ($bin) in a cgroup v2 guest"
    script+="; echo '==> guest: tests/$t.rs'; $(printf %q "$snap/$t") \"\$@\" || { r=\$?; [ \$rc -ne 0 ] || rc=\$r; }"
done
script+='; exit $rc'
if [[ $# -eq 0 ]]; then
    set -- --test-threads=1
fi
# 1 GiB and 2 vCPUs: each container test runs a registry, a daemon and
# containers that allocate up to their limits.
bash "$guest" -m 1024 -c 2 -e CRIUS_EXPECT_CGROUP_MODE=v2 "$repo" bash -c "$script" guest "$@"
