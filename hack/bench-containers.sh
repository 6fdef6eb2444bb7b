#!/usr/bin/env bash
# Container benchmark (release build): crius vs containerd's CRI where
# installed, same client, CNI conflist and busybox image. Prints medians, p90,
# ratios against the targets, and PSS/RSS with pods holding a sleeping
# container. Run as root from the repository root.
# CRIUS_BENCH_ITERS (default 20) and CRIUS_BENCH_PODS (default "10,100")
# make a quick run possible, e.g. CRIUS_BENCH_ITERS=5 CRIUS_BENCH_PODS=10.
set -euo pipefail
cd "$(dirname "$0")/.."
bash hack/install-deps.sh >/dev/null
command -v containerd >/dev/null || echo "bench-containers: containerd not installed (apt-get install containerd); crius figures only" >&2
exec cargo bench --bench containers
