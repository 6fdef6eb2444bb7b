#!/usr/bin/env bash
# Pod sandbox benchmark (release build): crius vs containerd's CRI where
# installed, same client and CNI conflist. Prints medians, p90, ratios,
# processes per pod and PSS. Run as root from the repository root.
set -euo pipefail
cd "$(dirname "$0")/.."
bash hack/install-deps.sh >/dev/null
command -v containerd >/dev/null || echo "bench-pods: containerd not installed (apt-get install containerd); crius figures only" >&2
exec cargo bench --bench pods
