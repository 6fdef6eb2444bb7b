#!/usr/bin/env bash
# Runs tests/cgroup.rs in a pure cgroup v2 world. This host is cgroup v1
# (hybrid), and kubelet >= 1.35 needs v2, so the same test binary is built
# here and run inside a throw-away QEMU guest booted with cgroup_no_v1=all.
#
#   hack/test-cgroup-v2.sh [TEST-ARGS...]     # default: --test-threads=1
#
# The guest harness is taken from $CRIUS_V2_GUEST (default
# ../shared/v2-guest/run-in-v2-guest.sh, relative to the repo); it shares
# the repo dir into the guest at the same path, so the host-built binary runs
# unchanged. Host packages: qemu-system-x86 busybox-static cpio kmod xz-utils.
# Exit status: the tests'; 124 guest timeout; 125 harness failure.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
guest=${CRIUS_V2_GUEST:-../shared/v2-guest/run-in-v2-guest.sh}

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

# cargo's JSON messages name the test executable (one object per line);
# the human "Executable" line is not a stable format.
messages=$(cargo test --test cgroup --no-run --message-format=json)
bin=$(grep '"reason":"compiler-artifact"' <<<"$messages" |
    grep '"kind":\["test"\],[^{]*"name":"cgroup"' |
    sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n 1 || true)
if [[ -z $bin || ! -x $bin ]]; then
    echo "test-cgroup-v2: cargo did not report the tests/cgroup.rs executable" >&2
    exit 125
fi
# The guest sees the host's / read-only as well as the repo, so the binary
# runs from wherever the (possibly shared) target dir is.
echo "==> $bin in a cgroup v2 guest"
if [[ $# -eq 0 ]]; then
    set -- --test-threads=1
fi
exec bash "$guest" -e CRIUS_EXPECT_CGROUP_MODE=v2 "$repo" "$bin" "$@"
