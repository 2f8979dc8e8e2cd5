#!/usr/bin/env bash
# Where a registry spends its time under one load: starts berth (or distribution), runs one
# berth-load scenario against it under `perf record` (software cpu-clock sampling: these VMs
# expose no hardware counters) and `strace -c`, and prints the hottest symbols, the split by
# thread, and the syscall summary.
#
# Usage: tools/bench/profile.sh [--distribution] [--keep] SCENARIO
#   SCENARIO: push-chunked | pull | push-small | manifest-get
# Environment: BLOB_SIZE (default 1GiB), CHUNK (16MiB), SMALL_COUNT (4000), TOP (30).
set -euo pipefail

BLOB_SIZE=${BLOB_SIZE:-1GiB}
CHUNK=${CHUNK:-16MiB}
SMALL_COUNT=${SMALL_COUNT:-4000}
TOP=${TOP:-30}
SERVER=berth
KEEP=0
SCENARIO=""
while [ $# -gt 0 ]; do
  case "$1" in
    --distribution) SERVER=distribution ;;
    --keep) KEEP=1 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    push-chunked|pull|push-small|manifest-get) SCENARIO=$1 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done
[ -n "$SCENARIO" ] || { sed -n '2,10p' "$0"; exit 2; }

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
# The `profiling` profile: release code with symbols and line tables (the release binary is
# stripped, so perf could name none of its functions).
BIN=$TARGET/profiling
LOAD=$BIN/berth-load
log() { echo "[profile] $*" >&2; }

command -v perf >/dev/null || apt-get install -y linux-perf >&2
command -v strace >/dev/null || apt-get install -y strace >&2
command -v wrk >/dev/null || apt-get install -y wrk >&2
if [ "$SERVER" = berth ]; then
  (cd "$ROOT" && cargo build --profile profiling -p berth -p berth-load >&2)
else
  (cd "$ROOT" && cargo build --profile profiling -p berth-load >&2)
fi

DIR=$(mktemp -d /var/tmp/berth-profile.XXXXXX)
SPID=""
cleanup() {
  if [ -n "$SPID" ]; then kill "$SPID" 2>/dev/null || true; wait "$SPID" 2>/dev/null || true; fi
  if [ "$KEEP" = 0 ]; then rm -rf "$DIR"; else log "kept $DIR"; fi
}
trap cleanup EXIT

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
URL="http://127.0.0.1:$PORT"
if [ "$SERVER" = berth ]; then
  "$BIN/berth" serve --listen "127.0.0.1:$PORT" --data "$DIR/data" >"$DIR/server.log" 2>&1 &
else
  cat >"$DIR/config.yml" <<EOF
version: 0.1
log:
  level: info
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: $DIR/data
http:
  addr: 127.0.0.1:$PORT
EOF
  docker-registry serve "$DIR/config.yml" >"$DIR/server.log" 2>&1 &
fi
SPID=$!
for _ in $(seq 100); do curl -fs -o /dev/null "$URL/v2/" && break; sleep 0.1; done

# Fixtures that the measured scenario needs, pushed before recording starts.
DIGEST=""
MURL=""
case "$SCENARIO" in
  pull)
    line=$("$LOAD" --registry "$URL" push-chunked --size "$BLOB_SIZE" --chunk "$CHUNK" 2>/dev/null)
    DIGEST=$(tr ' ' '\n' <<<"$line" | sed -n 's/^digest=//p') ;;
  manifest-get)
    line=$("$LOAD" --registry "$URL" push-manifest)
    MURL=$(tr ' ' '\n' <<<"$line" | sed -n 's/^url=//p') ;;
esac

run_load() {
  case "$SCENARIO" in
    push-chunked) "$LOAD" --registry "$URL" push-chunked --size "$BLOB_SIZE" --chunk "$CHUNK" 2>/dev/null ;;
    pull) curl -fs -o /dev/null -w 'pull bytes=%{size_download} seconds=%{time_total}\n' \
            "$URL/v2/load/chunked/blobs/$DIGEST" ;;
    push-small) "$LOAD" --registry "$URL" push-small --count "$SMALL_COUNT" --concurrency 4 ;;
    manifest-get) wrk -t2 -c16 -d8s -H 'Accept: application/vnd.oci.image.manifest.v1+json' "$MURL" \
                    | grep -E 'Requests/sec|Latency' ;;
  esac
}

# The hashing of push-chunked's data happens before its timed run; start recording only
# once the first request is in flight would need cooperation from the tool, so the load is
# run twice: once under perf, once under strace.
sync
# System-wide, filtered to the server afterwards: `-p` misses threads the server starts later
# (tokio's blocking pool, where the store's work runs).
perf record -e cpu-clock -F 1999 -g -a -o "$DIR/perf.data" 2>"$DIR/perf.err" &
PERF=$!
sleep 0.5
run_load
kill -INT "$PERF"; wait "$PERF" 2>/dev/null || true

# Report pipelines end in head: a closed pipe must not end the script.
perf report -i "$DIR/perf.data" --pid="$SPID" --percentage relative --no-children --sort pid -n --stdio -g none \
  2>/dev/null | grep -E '^ +[0-9]' >"$DIR/threads.txt" || true
echo
echo "## $SERVER $SCENARIO: server CPU time $(awk '{ n += $2 } END { printf "%.2f", n / 1999 }' "$DIR/threads.txt") s, by thread (% of the server's samples, samples, thread)"
head -10 "$DIR/threads.txt"
echo
echo "## whole machine during the run, by command (the client and other work share the cores)"
{ perf report -i "$DIR/perf.data" --no-children --sort comm --stdio -g none 2>/dev/null \
  | grep -E '^ +[0-9]' | head -8; } || true
echo
echo "## $SERVER $SCENARIO: hottest symbols (self time, % of the server's samples)"
{ perf report -i "$DIR/perf.data" --pid="$SPID" --percentage relative --no-children --sort dso,sym --stdio -g none 2>/dev/null \
  | grep -E '^ +[0-9]' | head -"$TOP"; } || true

sync
strace -c -f -p "$SPID" -o "$DIR/strace.txt" 2>/dev/null &
STRACE=$!
sleep 0.5
run_load >/dev/null
kill -INT "$STRACE"; wait "$STRACE" 2>/dev/null || true
echo
echo "## $SERVER $SCENARIO: syscalls (strace -c -f; slows the server, counts are what matter)"
head -25 "$DIR/strace.txt"
