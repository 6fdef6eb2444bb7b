#!/usr/bin/env bash
# Builds the crius installer image (hack/Containerfile) with buildah, which
# Debian packages and which needs no daemon:
#   bash hack/build-image.sh [IMAGE]        # default IMAGE: crius:<version>
#   CRIUS_BIN=path/to/crius bash hack/build-image.sh   # skip the release build
# Then push it where the nodes pull from, e.g.
#   buildah push crius:0.1.0 docker://registry.example.com/crius:0.1.0
# or save it for kind/minikube: buildah push crius:0.1.0 oci-archive:crius.tar
# The image needs no base image and no network (FROM scratch; see Containerfile).
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "build-image: error: $*" >&2; exit 1; }
command -v buildah >/dev/null || die "buildah is missing: apt-get install buildah (Debian package buildah)"
busybox=/bin/busybox
file -L "$busybox" 2>/dev/null | grep -q 'statically linked' ||
    die "$busybox is not a static busybox: apt-get install busybox-static"

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
image=${1:-crius:$version}

bin=${CRIUS_BIN:-}
if [[ -z "$bin" ]]; then
    cargo build --release --locked
    bin=target/release/crius
fi
[[ -x "$bin" ]] || die "$bin is not an executable"

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
root=$ctx/rootfs
mkdir -p "$root/bin" "$root/usr/local/bin" "$root/usr/share/crius" "$root/tmp"
chmod 1777 "$root/tmp"
# Debug info is most of the release binary's size; the node does not need it.
strip -o "$root/usr/local/bin/crius" "$bin"
chmod 0755 "$root/usr/local/bin/crius"
install -m 0644 hack/crius.service "$root/usr/share/crius/crius.service"
install -m 0755 "$busybox" "$root/bin/busybox"
for applet in $("$busybox" --list); do
    [[ -e "$root/bin/$applet" ]] || ln -s busybox "$root/bin/$applet"
done
cp hack/Containerfile "$ctx/Containerfile"

buildah build --quiet --layers=false --build-arg "VERSION=$version" \
    -f "$ctx/Containerfile" -t "$image" "$ctx" >/dev/null
echo "build-image: built $image ($(du -sh "$root" | cut -f1) unpacked)"
