#!/usr/bin/env bash
# Builds a small runnable OCI image with umoci, without any container engine:
# a busybox-static base layer (/bin/busybox, /bin/sh) and one extra layer per SIZE_KIB argument
# holding /data/layer<N>.bin of random, incompressible bytes (so blob sizes equal data sizes).
#
# usage: make-image.sh LAYOUT TAG [SIZE_KIB ...]
# IMAGE_ARCH sets the config's architecture (default amd64; the binary stays the host's).
# prints one line per random file: "<path in image> <sha256 hex>"
set -euo pipefail

if [ "$#" -lt 2 ]; then
    echo "usage: $0 LAYOUT TAG [SIZE_KIB ...]" >&2
    exit 2
fi
layout="$1"
tag="$2"
shift 2

busybox=/bin/busybox
[ -x "$busybox" ] || { echo "make-image: $busybox missing (apt-get install busybox-static)" >&2; exit 1; }
work="$(mktemp -d "${TMPDIR:-/tmp}/make-image.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# The fixed timestamp keeps the history stable; layer contents are what the tests compare.
[ -d "$layout" ] || umoci init --layout "$layout"
umoci new --image "$layout:$tag"
umoci config --image "$layout:$tag" --config.cmd /bin/sh --config.env PATH=/bin \
    --architecture "${IMAGE_ARCH:-amd64}" --os linux --history.created 2024-01-01T00:00:00Z

# Each layer gets a fresh unpack so that its diff holds exactly the files added in that step.
add_layer() {
    local bundle="$work/bundle"
    rm -rf "$bundle"
    umoci unpack --image "$layout:$tag" "$bundle" >/dev/null
    "$@" "$bundle/rootfs"
    umoci repack --image "$layout:$tag" --history.created 2024-01-01T00:00:00Z "$bundle" >/dev/null
}

base_files() {
    mkdir -p "$1/bin" "$1/data"
    cp "$busybox" "$1/bin/busybox"
    ln -s busybox "$1/bin/sh"
}

n=0
random_file() {
    head -c "$((size_kib * 1024))" /dev/urandom >"$1/data/layer$n.bin"
    echo "/data/layer$n.bin $(sha256sum "$1/data/layer$n.bin" | cut -d' ' -f1)"
}

add_layer base_files
for size_kib in "$@"; do
    n=$((n + 1))
    add_layer random_file
done
umoci gc --layout "$layout"
