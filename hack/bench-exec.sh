#!/usr/bin/env bash
# Exec benchmark (release build): crius vs containerd's CRI where installed,
# same client, CNI conflist and busybox image; one pod with a sleeping
# container per runtime. Prints medians, p90 and ratios of ExecSync (`true`,
# `echo hello`) and of Exec over SPDY, against the target ExecSync <= 0.5x
# containerd. Run as root from the repository root.
# CRIUS_BENCH_ITERS (default 50) sets the iterations, e.g. CRIUS_BENCH_ITERS=20.
set -euo pipefail
cd "$(dirname "$0")/.."
bash hack/install-deps.sh >/dev/null
command -v containerd >/dev/null || echo "bench-exec: containerd not installed (apt-get install containerd); crius figures only" >&2
exec cargo bench --bench exec
