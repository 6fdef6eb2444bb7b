#!/usr/bin/env bash
# Runs the whole test suite, as CI does (.ci/run calls this): installs the
# Debian packages the tests need, then format check, clippy with warnings as
# errors, and every test target. Integration tests start real daemons and
# registries, and need root (CI is root). Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."

step() {
    echo
    echo "==> $*"
}

step "hack/install-deps.sh"
bash hack/install-deps.sh

step "cargo fmt --all -- --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings

# Every integration test owns its registry, daemon and temp dirs, so tests
# run in parallel; the thread count follows the CPUs (each test mostly waits
# on child processes). Override with TEST_THREADS.
threads=${TEST_THREADS:-$(($(nproc) * 2))}
step "cargo test --lib --bins --tests --no-fail-fast -- --test-threads=$threads"
cargo test --lib --bins --tests --no-fail-fast -- --test-threads="$threads"

# This machine runs cgroup v1; kubelet >= 1.35 needs v2. The cgroup tests
# (sys::cgroup and container resources) also run in a qemu guest whose only
# hierarchy is cgroup v2.
step "cgroup v2: tests/cgroup.rs, container_resources.rs, container_stats.rs and metrics.rs in a qemu guest (hack/test-cgroup-v2.sh)"
bash hack/test-cgroup-v2.sh

echo
echo "==> all checks passed"
