#!/usr/bin/env bash
# Image pull benchmark (release build): crius vs containerd where installed.
# Prints medians and ratios. Run as root from the repository root.
set -euo pipefail
cd "$(dirname "$0")/.."
bash hack/install-deps.sh >/dev/null
command -v containerd >/dev/null || echo "bench-images: containerd not installed (apt-get install containerd); crius figures only" >&2
exec cargo bench --bench images
