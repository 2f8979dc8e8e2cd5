#!/usr/bin/env bash
# Collection benchmarks, in one run, over loopback, release builds:
#   (a) compaction throughput, unthrottled, in MB/s of live bytes relocated, next to the disk's
#       durable write bandwidth (dd, 1 GiB, fdatasync) measured in the same run; the store is
#       SIZE of bulk images (one 8 MiB layer each) with a DELETE fraction of them deleted, and
#       the collection is run by the engine directly (`berth-gc-bench compact`, no server);
#   (b) p50/p99 latency of blob GETs (64 KiB) and manifest GETs from CLIENTS clients against
#       `berth serve`, idle and while `POST /admin/gc` collects and compacts a second such store
#       at the server's default throttle (100 MB/s), or at RATE.
# Prints a markdown table.
#
# Usage: tools/bench/gc.sh [--keep] [--dir DIR]
#   --keep       keep the work directory (stores, logs, raw results)
#   --dir DIR    work directory; it must be on the disk under test (default: /var/tmp/berth-gc.*)
# Environment: SIZE (bulk bytes per store; default 4GiB), DELETE (fraction deleted; default 0.6),
#   CLIENTS (default 16), IDLE_SECONDS (idle latency run; default 15),
#   RATE (the `rate` of POST /admin/gc for (b), e.g. 50MB or unlimited; default: the server's).
# Disk use peaks at about 1.5 x SIZE; run time about 3 min after the build.
set -euo pipefail

SIZE=${SIZE:-4GiB}
DELETE=${DELETE:-0.6}
CLIENTS=${CLIENTS:-16}
IDLE_SECONDS=${IDLE_SECONDS:-15}
RATE=${RATE:-}

KEEP=0
DIR=""
while [ $# -gt 0 ]; do
  case "$1" in
    --keep) KEEP=1 ;;
    --dir) DIR="$2"; shift ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
LOAD=$TARGET/release/berth-load
HELPER=$TARGET/release/berth-gc-bench
BERTH=$TARGET/release/berth

log() { echo "[gc-bench] $*" >&2; }
. "$(dirname "$0")/lib.sh"

command -v curl >/dev/null || { log "installing curl"; apt-get install -y curl >&2; }

log "building"
(cd "$ROOT" && cargo build --release -p berth -p berth-load --features berth-load/engine >&2)

if [ -z "$DIR" ]; then
  DIR=$(mktemp -d /var/tmp/berth-gc.XXXXXX)
else
  mkdir -p "$DIR"
fi
DIR=$(cd "$DIR" && pwd)
log "work directory $DIR"
STARTED=$(date +%s)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  if [ "$KEEP" = 0 ]; then rm -rf "$DIR"; else log "kept $DIR"; fi
}
trap cleanup EXIT



wait_line() { # file pattern seconds -> the first matching line
  local deadline=$(( $(date +%s) + $3 ))
  while [ "$(date +%s)" -lt "$deadline" ]; do
    if grep -q "$2" "$1" 2>/dev/null; then grep -m1 "$2" "$1"; return 0; fi
    sleep 0.05
  done
  log "no '$2' in $1 within $3 s"; return 1
}

calc() { awk "BEGIN { printf \"%.${2:-1}f\", $1 }"; }

# Same convention as compare.sh: every measured phase starts with dirty data written back and
# clean cache dropped, so the compaction reads the segments from the disk.
settle_page_cache() {
  sync
  if [ -w /proc/sys/vm/drop_caches ]; then echo 1 >/proc/sys/vm/drop_caches; fi
}

# ---- disk: durable write bandwidth ---------------------------------------------------------
dd_mbps() {
  local out secs
  settle_page_cache
  out=$(dd if=/dev/zero of="$DIR/dd.bin" bs=16M count=64 conv=fdatasync 2>&1 | tail -1)
  rm -f "$DIR/dd.bin"
  secs=$(sed -E 's/.* copied, ([0-9.]+) s.*/\1/' <<<"$out")
  calc "1073741824 / $secs / 1e6"
}
log "dd durable write bandwidth"
DD_RUNS="$(dd_mbps) $(dd_mbps) $(dd_mbps)"
DD=$(tr ' ' '\n' <<<"$DD_RUNS" | sort -g | sed -n 2p)
log "dd: $DD_RUNS MB/s (median $DD)"

# ---- (a) compaction throughput, unthrottled -------------------------------------------------
log "(a) filling $SIZE, deleting $DELETE of it"
FILL_A=$("$HELPER" fill --dir "$DIR/a" --size "$SIZE" --delete "$DELETE" --probes 16 \
  --targets "$DIR/a.targets" --seed 1)
log "$FILL_A"
settle_page_cache
log "(a) collecting with compaction, unthrottled"
COMPACT=$("$HELPER" compact --dir "$DIR/a" | grep '^compact ')
log "$COMPACT"
rm -rf "$DIR/a"

# ---- (b) read latency, idle and while compacting ------------------------------------------
log "(b) filling $SIZE, deleting $DELETE of it"
FILL_B=$("$HELPER" fill --dir "$DIR/b" --size "$SIZE" --delete "$DELETE" --probes 256 \
  --targets "$DIR/targets" --seed 2)
log "$FILL_B"
PORT=$(free_port)
URL=http://127.0.0.1:$PORT

latency() { # label seconds [stop-file]
  local args=(--registry "$URL" latency --targets "$DIR/targets" --clients "$CLIENTS"
    --seconds "$2" --label "$1")
  if [ -n "${3:-}" ]; then args+=(--stop-file "$3"); fi
  "$LOAD" "${args[@]}" | tee -a "$DIR/latency.txt" >&2
}

log "(b) idle"
settle_page_cache
"$BERTH" serve --data "$DIR/b" --listen "127.0.0.1:$PORT" >"$DIR/berth.log" 2>&1 &
BERTH_PID=$!
PIDS+=("$BERTH_PID")
wait_http "$URL/v2/"
latency idle "$IDLE_SECONDS"

log "(b) while POST /admin/gc${RATE:+?rate=$RATE} collects"
settle_page_cache
latency collecting 900 "$DIR/gc-done" &
LAT_PID=$!
curl -fsS -X POST "$URL/admin/gc${RATE:+?rate=$RATE}" -o "$DIR/gc.json"
touch "$DIR/gc-done"
wait "$LAT_PID"
# The report as a result line: key=value for each number.
GC_DONE=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(" ".join(f"{k}={v}" for k,v in r.items() if isinstance(v,(int,float))))' "$DIR/gc.json")
log "gc report: $GC_DONE"
kill -TERM "$BERTH_PID"
wait "$BERTH_PID" || true

# ---- table ----------------------------------------------------------------------------------
row() { # label -> "| blob p50 | blob p99 | manifest p50 | manifest p99 | GETs/s |"
  local b m
  b=$(grep "label=$1 kind=blob" "$DIR/latency.txt")
  m=$(grep "label=$1 kind=manifest" "$DIR/latency.txt")
  echo "| $(field "$b" p50_ms) | $(field "$b" p99_ms) | $(field "$m" p50_ms) | $(field "$m" p99_ms) | $(calc "$(field "$b" per_second) + $(field "$m" per_second)" 0) |"
}
errors() { field "$(grep "latency-total label=$1 " "$DIR/latency.txt")" errors; }
RELOC=$(field "$COMPACT" relocated_bytes)
GC_RELOC=$(field "$GC_DONE" bytes_relocated)
GC_SECS=$(field "$GC_DONE" compact_seconds)
echo
echo "## Collection benchmark, $(date -u +%Y-%m-%d) ($(nproc) CPUs, load at start $LOAD_START)"
echo
echo "Stores: $SIZE of 8 MiB bulk layers in the default 1 GiB segments, $DELETE of the images deleted."
echo
echo "| What | Result |"
echo "|---|---|"
echo "| disk durable write (dd 1 GiB, fdatasync; median of $DD_RUNS) | $DD MB/s |"
echo "| (a) compaction, unthrottled: live bytes relocated | $(field "$COMPACT" MB/s) MB/s ($(calc "$RELOC / 1073741824" 2) GiB in $(calc "$(field "$COMPACT" compact_seconds)") s; $(field "$COMPACT" segments_compacted) segments, $(calc "$(field "$COMPACT" reclaimed_bytes) / 1073741824" 2) GiB reclaimed) |"
echo "| (a) mark + sweep before it | $(field "$COMPACT" mark_seconds) s + $(field "$COMPACT" sweep_seconds) s |"
echo "| (b) compaction by POST /admin/gc under the read load (rate ${RATE:-default}) | $(calc "$GC_RELOC / $GC_SECS / 1e6") MB/s ($(calc "$GC_RELOC / 1073741824" 2) GiB in $(calc "$GC_SECS") s; mark $(calc "$(field "$GC_DONE" mark_seconds)" 3) s, sweep $(calc "$(field "$GC_DONE" sweep_seconds)" 3) s) |"
echo
echo "| $CLIENTS clients, ms | blob GET p50 | blob GET p99 | manifest GET p50 | manifest GET p99 | GETs/s |"
echo "|---|---|---|---|---|---|"
echo "| idle $(row idle)"
echo "| during POST /admin/gc (mark, sweep, compaction) $(row collecting)"
echo
echo "Errors: idle $(errors idle), during the collection $(errors collecting)." \
  "Blob GETs read 64 KiB probe layers spread among the bulk images (relocated by the" \
  "compaction); manifest GETs are by tag."
echo "Run time $(( $(date +%s) - STARTED )) s after the build."
