#!/usr/bin/env bash
# What the shipped binary costs at rest: the size of the release `berth` and the idle memory
# of `berth serve` on an empty data directory (VmRSS and RssAnon read from /proc 2 s after
# `/v2/` first answers).
#
# Usage: tools/bench/footprint.sh   (honours CARGO_TARGET_DIR; SETTLE=2 seconds)
set -euo pipefail

SETTLE=${SETTLE:-2}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BERTH=$TARGET/release/berth
(cd "$ROOT" && cargo build --release -p berth --bin berth >&2)

DIR=$(mktemp -d /var/tmp/berth-footprint.XXXXXX)
SPID=""
cleanup() {
  if [ -n "$SPID" ]; then kill "$SPID" 2>/dev/null || true; wait "$SPID" 2>/dev/null || true; fi
  rm -rf "$DIR"
}
trap cleanup EXIT

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$BERTH" serve --listen "127.0.0.1:$PORT" --data "$DIR/data" >"$DIR/server.log" 2>&1 &
SPID=$!
for _ in $(seq 100); do curl -fs -o /dev/null "http://127.0.0.1:$PORT/v2/" && break; sleep 0.1; done
curl -fs -o /dev/null "http://127.0.0.1:$PORT/v2/"
sleep "$SETTLE"
kib() { awk -v k="$1" '$1 == k":" { print $2 }' "/proc/$SPID/status"; }
size=$(stat -c %s "$BERTH")
echo "binary bytes=$size MiB=$(awk -v b="$size" 'BEGIN { printf "%.1f", b / 1048576 }')"
echo "idle VmRSS_KiB=$(kib VmRSS) RssAnon_KiB=$(kib RssAnon)"
