#!/usr/bin/env bash
# Stats benchmark (release build): ListContainerStats with 100 running
# containers in 10 pods, crius vs containerd's CRI where installed, same
# client, CNI conflist and busybox image. Prints median, p90 and the ratio
# against the target (<= 0.5x containerd). Run as root from the repository
# root. CRIUS_BENCH_ITERS (default 50), CRIUS_BENCH_PODS (default 10) and
# CRIUS_BENCH_PER_POD (default 10) change the run, e.g. CRIUS_BENCH_PODS=2.
set -euo pipefail
cd "$(dirname "$0")/.."
bash hack/install-deps.sh >/dev/null
command -v containerd >/dev/null || echo "bench-stats: containerd not installed (apt-get install containerd); crius figures only" >&2
exec cargo bench --bench stats
