#!/usr/bin/env bash
# Small durable pushes against the disk's sync rate, in one run on one machine:
#   `berth serve` (release, default settings) takes 4 KiB monolithic pushes from 4 and from 16
#   concurrent clients; right before and right after each of those runs, the single-threaded
#   rate of 4 KiB append + fdatasync on the data directory's file system is measured
#   (`berth-load sync-rate`), and the push rate is compared with the higher of the two.
#   Then the same pushes again, each on a fresh server run under strace (only fdatasync and
#   fsync are stopped at, --seccomp-bpf), for the syncs per push: the segment log's and the
#   index's (index.redb) apart.
# Prints a markdown table: pushes/s, the sync rates around them, the ratio, goal ≥ 1.5, met,
# p50/p99 latency, syncs per push.
#
# Usage: tools/bench/small-pushes.sh [--keep] [--dir DIR] [--no-strace]
#   --keep       keep the work directory (data, logs, raw results)
#   --dir DIR    work directory; it must be on the disk under test (default: /var/tmp/berth-small.*)
#   --no-strace  skip the sync count runs
# Environment: COUNT (pushes per client count; default 4000), CLIENTS (default "4 16"),
#   SIZE (default 4KiB), SYNC_SECONDS (each sync-rate measurement; default 3), BERTH (the berth binary to measure; default
#   the release build), BERTH_ARGS (extra `berth serve` flags for experiments).
set -euo pipefail

COUNT=${COUNT:-4000}
CLIENTS=${CLIENTS:-"4 16"}
SIZE=${SIZE:-4KiB}
SYNC_SECONDS=${SYNC_SECONDS:-3}
BERTH_ARGS=${BERTH_ARGS:-}
GOAL=1.5

KEEP=0
STRACE=1
DIR=""
while [ $# -gt 0 ]; do
  case "$1" in
    --keep) KEEP=1 ;;
    --no-strace) STRACE=0 ;;
    --dir) DIR="$2"; shift ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
LOAD=$TARGET/release/berth-load
BERTH=${BERTH:-$TARGET/release/berth}

log() { echo "[bench] $*" >&2; }
. "$(dirname "$0")/lib.sh"

if [ "$STRACE" = 1 ] && ! command -v strace >/dev/null; then
  log "installing strace"
  apt-get install -y strace >&2
fi
log "building"
(cd "$ROOT" && cargo build --release -p berth -p berth-load >&2)

if [ -z "$DIR" ]; then
  DIR=$(mktemp -d /var/tmp/berth-small.XXXXXX)
else
  mkdir -p "$DIR"
fi
DIR=$(cd "$DIR" && pwd)
log "work directory $DIR"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

SPID=""
stop_server() {
  if [ -n "$SPID" ]; then
    # Under strace the server is strace's child: strace blocks fatal signals while it writes
    # to a file, and exits once the server has.
    local child; child=$(pgrep -P "$SPID" || true)
    kill ${child:-$SPID} 2>/dev/null || true
    wait "$SPID" 2>/dev/null || true
    SPID=""
  fi
}
cleanup() {
  stop_server
  if [ "$KEEP" = 0 ]; then rm -rf "$DIR"; else log "kept $DIR"; fi
}
trap cleanup EXIT




calc() { awk "BEGIN { printf \"%.${2:-1}f\", $1 }"; }

start_server() { # data-dir [wrapper...] -> sets URL and SPID
  local data=$1; shift
  local port; port=$(free_port)
  URL="http://127.0.0.1:$port"
  "$@" "$BERTH" serve --listen "127.0.0.1:$port" --data "$data" $BERTH_ARGS \
    >>"$DIR/berth.log" 2>&1 &
  SPID=$!
  wait_http "$URL/v2/"
}

sync_rate() {
  local line
  line=$("$LOAD" sync-rate --dir "$DIR" --size "$SIZE" --seconds "$SYNC_SECONDS")
  echo "$line" >>"$DIR/results.txt"
  log "$line"
  field "$line" 'syncs/s'
}

push_small() { # clients -> result line
  "$LOAD" --registry "$URL" push-small --count "$COUNT" --size "$SIZE" \
    --concurrency "$1" --repo "bench/small-$1"
}

# ---- berth, each run between two measurements of the disk's rate ----------------------------
start_server "$DIR/data"
declare -A OPS P50 P99 SYNC_BEFORE SYNC_AFTER SYNC
for c in $CLIENTS; do
  SYNC_BEFORE[$c]=$(sync_rate)
  line=$(push_small "$c")
  echo "berth $line" >>"$DIR/results.txt"
  OPS[$c]=$(field "$line" 'ops/s'); P50[$c]=$(field "$line" p50_ms); P99[$c]=$(field "$line" p99_ms)
  log "$c clients: ${OPS[$c]} pushes/s (p50 ${P50[$c]} ms, p99 ${P99[$c]} ms, $(field "$line" mode))"
  SYNC_AFTER[$c]=$(sync_rate)
  SYNC[$c]=$(awk -v a="${SYNC_BEFORE[$c]}" -v b="${SYNC_AFTER[$c]}" 'BEGIN { print (a+0 > b+0) ? a : b }')
done
stop_server

# ---- syncs per push, each client count on a fresh server under strace -------------------------
declare -A LOG_SYNCS INDEX_SYNCS
for c in $CLIENTS; do LOG_SYNCS[$c]="-"; INDEX_SYNCS[$c]="-"; done
if [ "$STRACE" = 1 ]; then
  for c in $CLIENTS; do
    trace="$DIR/strace-$c.txt"
    start_server "$DIR/strace-data-$c" strace -f --seccomp-bpf -y -e trace=fdatasync,fsync -o "$trace"
    line=$(push_small "$c")
    echo "berth under strace $line" >>"$DIR/results.txt"
    stop_server
    # Calls name their file (-y); an interrupted call's second half ("resumed") is not counted.
    # Start-up and shutdown add a handful of syncs to the whole run's count.
    n=$(field "$line" count)
    seg=$(grep -v resumed "$trace" | grep -Ec '(fdatasync|fsync)\([0-9]+<[^>]*\.seg>' || true)
    idx=$(grep -v resumed "$trace" | grep -Ec '(fdatasync|fsync)\([0-9]+<[^>]*index\.redb>' || true)
    LOG_SYNCS[$c]=$(calc "$seg / $n" 3)
    INDEX_SYNCS[$c]=$(calc "$idx / $n" 3)
    log "$c clients under strace: $(field "$line" 'ops/s') pushes/s; $seg log syncs, $idx index syncs for $n pushes"
  done
fi
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- report ----------------------------------------------------------------------------------
cat <<EOF

Small pushes ($SIZE, monolithic, $COUNT per client count); load average $LOAD_START at the start, $LOAD_END at the end.
Sync rate: single-threaded $SIZE append + fdatasync, $SYNC_SECONDS s right before and right after each push run; the ratio is to the higher.

| clients | pushes/s | sync rate before / after (syncs/s) | × sync rate | goal | met | p50 ms | p99 ms | log syncs/push | index syncs/push |
|---|---|---|---|---|---|---|---|---|---|
EOF
for c in $CLIENTS; do
  ratio=$(calc "${OPS[$c]} / ${SYNC[$c]}" 2)
  met=$(awk -v r="$ratio" -v g="$GOAL" 'BEGIN { print (r + 0 >= g) ? "yes" : "NO" }')
  echo "| $c | ${OPS[$c]} | ${SYNC_BEFORE[$c]} / ${SYNC_AFTER[$c]} | $ratio | ≥ $GOAL | $met | ${P50[$c]} | ${P99[$c]} | ${LOG_SYNCS[$c]} | ${INDEX_SYNCS[$c]} |"
done
