#!/usr/bin/env bash
# Memory bound while streaming: N concurrent chunked pushes of SIZE each against a freshly
# started registry, sampling the server's VmRSS and RssAnon every 100 ms. Goal of the
# performance section: 16 concurrent 1 GiB pushes keep berth's RssAnon under 200 MiB.
#
# Usage: tools/bench/memory.sh [--distribution] [--keep] [--dir DIR]
#   --distribution  measure the Debian docker-registry instead of berth
# Environment: PARALLEL (default 16), BLOB_SIZE (default 1GiB), CHUNK (default 16MiB).
set -euo pipefail

PARALLEL=${PARALLEL:-16}
BLOB_SIZE=${BLOB_SIZE:-1GiB}
CHUNK=${CHUNK:-16MiB}
SERVER=berth
KEEP=0
DIR=""
while [ $# -gt 0 ]; do
  case "$1" in
    --distribution) SERVER=distribution ;;
    --keep) KEEP=1 ;;
    --dir) DIR="$2"; shift ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
log() { echo "[memory] $*" >&2; }

if [ "$SERVER" = berth ]; then
  (cd "$ROOT" && cargo build --release -p berth -p berth-load >&2)
else
  command -v docker-registry >/dev/null || apt-get install -y docker-registry >&2
  (cd "$ROOT" && cargo build --release -p berth-load >&2)
fi

if [ -z "$DIR" ]; then DIR=$(mktemp -d /var/tmp/berth-memory.XXXXXX); else mkdir -p "$DIR"; fi
SPID=""
cleanup() {
  if [ -n "$SPID" ]; then kill "$SPID" 2>/dev/null || true; wait "$SPID" 2>/dev/null || true; fi
  if [ "$KEEP" = 0 ]; then rm -rf "$DIR"; else log "kept $DIR"; fi
}
trap cleanup EXIT

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
if [ "$SERVER" = berth ]; then
  "$TARGET/release/berth" serve --listen "127.0.0.1:$PORT" --data "$DIR/data" >"$DIR/server.log" 2>&1 &
else
  cat >"$DIR/config.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $DIR/data
http:
  addr: 127.0.0.1:$PORT
EOF
  docker-registry serve "$DIR/config.yml" >"$DIR/server.log" 2>&1 &
fi
SPID=$!
for _ in $(seq 100); do curl -fs -o /dev/null "http://127.0.0.1:$PORT/v2/" && break; sleep 0.1; done

kib() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$SPID/status"; }
log "$SERVER idle: VmRSS $(kib VmRSS) kB, RssAnon $(kib RssAnon) kB"

"$TARGET/release/berth-load" --registry "http://127.0.0.1:$PORT" --threads 2 push-chunked \
  --parallel "$PARALLEL" --size "$BLOB_SIZE" --chunk "$CHUNK" --repo memory/test \
  >"$DIR/push.txt" 2>"$DIR/push.err" &
LPID=$!
peak_rss=0; peak_anon=0
while kill -0 "$LPID" 2>/dev/null; do
  rss=$(kib VmRSS); anon=$(kib RssAnon)
  [ "$rss" -gt "$peak_rss" ] && peak_rss=$rss
  [ "$anon" -gt "$peak_anon" ] && peak_anon=$anon
  sleep 0.1
done
if ! wait "$LPID"; then cat "$DIR/push.err" >&2; exit 1; fi

total=$(grep '^push-chunked-total' "$DIR/push.txt" || grep '^push-chunked ' "$DIR/push.txt")
verdict=$(awk -v a="$peak_anon" 'BEGIN { print (a / 1024 < 200) ? "yes" : "NO" }')
echo "memory server=$SERVER parallel=$PARALLEL size=$BLOB_SIZE chunk=$CHUNK" \
  "peak_rss_kib=$peak_rss peak_rss_anon_kib=$peak_anon goal_rss_anon_below_200MiB=$verdict"
echo "$total"
