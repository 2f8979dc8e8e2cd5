#!/usr/bin/env bash
# The pull-through cache against its upstream, side by side in one run, over loopback, release
# build: an upstream berth holding a BLOB_SIZE blob of random data and a mirror berth with one
# `[[mirror]]` table toward it.
#   (a) First pull of the blob through the mirror (a fresh mirror data directory each time, so
#       the blob is fetched, stored and served at once) against a direct pull from the
#       upstream, alternating, RUNS times each: MB/s and time to first byte (curl
#       time_starttransfer) of each, medians, and their ratios (goals: MB/s ≥ 0.8× direct,
#       time to first byte ≤ 2× direct); the push of the blob into the upstream is timed too,
#       as the reference for what storing a blob costs on this machine.
#   (b) CLIENTS clients pulling one uncached blob at once through a fresh mirror: the bytes the
#       upstream sent (its berth_http_response_bytes_total delta; goal ≈ one blob, not CLIENTS)
#       and the aggregate rate.
# Prints a markdown table.
#
# Usage: tools/bench/mirror.sh [--keep] [--dir DIR]
# Environment: RUNS (default 3), CLIENTS (default 16), BLOB_SIZE (default 1GiB),
#   CHUNK (push chunk size, default 16MiB).
set -euo pipefail

RUNS=${RUNS:-3}
CLIENTS=${CLIENTS:-16}
BLOB_SIZE=${BLOB_SIZE:-1GiB}
CHUNK=${CHUNK:-16MiB}
NS=upstream.bench
REPO=bench/mirror

KEEP=0
DIR=""
while [ $# -gt 0 ]; do
  case "$1" in
    --keep) KEEP=1 ;;
    --dir) DIR="$2"; shift ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BERTH=$TARGET/release/berth
LOAD=$TARGET/release/berth-load
log() { echo "[mirror-bench] $*" >&2; }
. "$(dirname "$0")/lib.sh"

need=()
for tool in curl python3; do command -v "$tool" >/dev/null || need+=("$tool"); done
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  apt-get install -y "${need[@]}" >&2
fi

log "building"
(cd "$ROOT" && cargo build --release -p berth -p berth-load >&2)

if [ -z "$DIR" ]; then DIR=$(mktemp -d /var/tmp/berth-mirror.XXXXXX); else mkdir -p "$DIR"; fi
DIR=$(cd "$DIR" && pwd)
log "work directory $DIR"
STARTED=$(date +%s)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

UPSTREAM_PID=""
MIRROR_PID=""
cleanup() {
  for pid in $MIRROR_PID $UPSTREAM_PID; do kill "$pid" 2>/dev/null || true; done
  for pid in $MIRROR_PID $UPSTREAM_PID; do wait "$pid" 2>/dev/null || true; done
  if [ "$KEEP" = 0 ]; then rm -rf "$DIR"; else log "kept $DIR"; fi
}
trap cleanup EXIT




calc() { awk "BEGIN { printf \"%.${2:-1}f\", $1 }"; }

median() { tr ' ' '\n' <<<"$*" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

metric() { # url series -> value (0 when absent)
  curl -fsS "$1/metrics" | awk -v s="$2" '$1 == s { v = $2 } END { printf "%.0f\n", v + 0 }'
}

# ---- the upstream --------------------------------------------------------------------------
port=$(free_port)
"$BERTH" serve --listen "127.0.0.1:$port" --data "$DIR/upstream" >"$DIR/upstream.log" 2>&1 &
UPSTREAM_PID=$!
UPSTREAM="http://127.0.0.1:$port"
wait_http "$UPSTREAM/v2/"

# The push is timed too: a mirrored first pull stores the blob as a push does (sha256, chunk
# records, commit), so the push rate is the reference for what storing costs here.
log "pushing $BLOB_SIZE to the upstream"
sync
line=$("$LOAD" --registry "$UPSTREAM" push-chunked --size "$BLOB_SIZE" --chunk "$CHUNK" \
  --repo "$REPO" 2>/dev/null)
echo "upstream $line" >>"$DIR/results.txt"
DIGEST=$(field "$line" digest)
PUSH_RATE=$(field "$line" MB/s)
log "push: $PUSH_RATE MB/s"
SIZE=$(curl -fsSI "$UPSTREAM/v2/$REPO/blobs/$DIGEST" | awk 'tolower($1) == "content-length:" { print $2 + 0 }')

cat >"$DIR/mirror.toml" <<EOF
[[mirror]]
ns = "$NS"
upstream = "$UPSTREAM"
EOF

MIRROR=""
start_mirror() { # fresh data directory each time
  stop_mirror
  rm -rf "$DIR/mirror"
  local port
  port=$(free_port)
  "$BERTH" serve --config "$DIR/mirror.toml" --listen "127.0.0.1:$port" --data "$DIR/mirror" \
    >>"$DIR/mirror.log" 2>&1 &
  MIRROR_PID=$!
  MIRROR="http://127.0.0.1:$port"
  wait_http "$MIRROR/v2/"
}
stop_mirror() {
  if [ -n "$MIRROR_PID" ]; then
    kill "$MIRROR_PID" 2>/dev/null || true
    wait "$MIRROR_PID" 2>/dev/null || true
    MIRROR_PID=""
  fi
}

cpu_s() { # pid -> CPU seconds (user + system) it has used so far
  awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f\n", ($14 + $15) / hz }' "/proc/$1/stat"
}

pull() { # label url -> "MB/s ttfb_ms"; checks status and length
  local code bytes total ttfb
  read -r code bytes total ttfb < <(curl -sS -o /dev/null \
    -w '%{http_code} %{size_download} %{time_total} %{time_starttransfer}\n' "$2")
  if [ "$code" != 200 ] || [ "$bytes" != "$SIZE" ]; then
    log "$1: HTTP $code, $bytes of $SIZE bytes"; exit 1
  fi
  echo "$1 bytes=$bytes seconds=$total ttfb=$ttfb" >>"$DIR/results.txt"
  echo "$(calc "$bytes / $total / 1e6") $(calc "$ttfb * 1000" 2)"
}

# ---- (a) first pulls, direct and through a fresh mirror, alternating ----------------------
DIRECT_URL="$UPSTREAM/v2/$REPO/blobs/$DIGEST"
# The upstream serves from its page cache in both cases: one unmeasured pull warms it.
curl -fsS -o /dev/null "$DIRECT_URL"
D_RATE=(); D_TTFB=(); M_RATE=(); M_TTFB=(); D_CPU=(); M_CPU=()
for run in $(seq "$RUNS"); do
  sync
  up0=$(cpu_s "$UPSTREAM_PID")
  out=$(pull direct "$DIRECT_URL"); read -r rate ttfb <<<"$out"
  D_CPU+=("$(calc "$(cpu_s "$UPSTREAM_PID") - $up0" 2)")
  D_RATE+=("$rate"); D_TTFB+=("$ttfb")
  log "run $run direct: $rate MB/s, first byte after $ttfb ms"
  start_mirror
  sync
  up0=$(cpu_s "$UPSTREAM_PID"); mi0=$(cpu_s "$MIRROR_PID")
  out=$(pull mirror "$MIRROR/v2/$REPO/blobs/$DIGEST?ns=$NS"); read -r rate ttfb <<<"$out"
  M_CPU+=("$(calc "$(cpu_s "$UPSTREAM_PID") - $up0 + $(cpu_s "$MIRROR_PID") - $mi0" 2)")
  fetched=$(metric "$MIRROR" "berth_mirror_fetched_bytes_total{ns=\"$NS\"}")
  if [ "$fetched" != "$SIZE" ]; then log "the mirror stored $fetched of $SIZE bytes"; exit 1; fi
  M_RATE+=("$rate"); M_TTFB+=("$ttfb")
  log "run $run mirror: $rate MB/s, first byte after $ttfb ms"
done
stop_mirror
D_RATE_M=$(median "${D_RATE[@]}"); D_TTFB_M=$(median "${D_TTFB[@]}")
M_RATE_M=$(median "${M_RATE[@]}"); M_TTFB_M=$(median "${M_TTFB[@]}")
D_CPU_M=$(median "${D_CPU[@]}"); M_CPU_M=$(median "${M_CPU[@]}")
# A verifying cache hashes every byte with sha256 before it may hand out the last one, and
# sha256 is sequential: one core's rate bounds any first pull.
HASH_RATE=$("$LOAD" hash-rate --size "$BLOB_SIZE" | tr ' ' '\n' | sed -n 's|^MB/s=||p')
log "sha256 on one core: $HASH_RATE MB/s"

# ---- (b) CLIENTS pulls of one uncached blob at once ---------------------------------------
start_mirror
sync
sent_before=$(metric "$UPSTREAM" berth_http_response_bytes_total)
gets_before=$(metric "$UPSTREAM" 'berth_http_requests_total{route="blob",status="200"}')
log "$CLIENTS clients at once through a fresh mirror"
pids=()
T0=$(date +%s.%N)
for i in $(seq "$CLIENTS"); do
  curl -sS -o /dev/null -w '%{http_code} %{size_download}\n' \
    "$MIRROR/v2/$REPO/blobs/$DIGEST?ns=$NS" >"$DIR/client-$i.txt" &
  pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; done
T1=$(date +%s.%N)
for i in $(seq "$CLIENTS"); do
  if [ "$(cat "$DIR/client-$i.txt")" != "200 $SIZE" ]; then
    log "client $i: $(cat "$DIR/client-$i.txt")"; exit 1
  fi
done
sent=$(( $(metric "$UPSTREAM" berth_http_response_bytes_total) - sent_before ))
gets=$(( $(metric "$UPSTREAM" 'berth_http_requests_total{route="blob",status="200"}') - gets_before ))
joined=$(metric "$MIRROR" "berth_mirror_joined_fetches_total{ns=\"$NS\"}")
AGG=$(calc "$CLIENTS * $SIZE / ($T1 - $T0) / 1e6")
WALL=$(calc "$T1 - $T0" 2)
log "upstream sent $sent bytes in $gets blob GETs; $AGG MB/s aggregate over $WALL s"
stop_mirror

ratio() { calc "$1 / $2" 2; }
goal() { # value op threshold -> yes/NO
  if awk -v v="$1" -v t="$3" "BEGIN { exit !(v $2 t) }"; then echo "yes"; else echo "**NO**"; fi
}
R_RATE=$(ratio "$M_RATE_M" "$D_RATE_M")
R_TTFB=$(ratio "$M_TTFB_M" "$D_TTFB_M")
R_SENT=$(ratio "$sent" "$SIZE")

cat <<EOF

## Pull-through cache benchmark, $(date -u +%Y-%m-%dT%H:%MZ), commit $(cd "$ROOT" && git rev-parse --short HEAD)

Command: \`tools/bench/mirror.sh\` (RUNS=$RUNS CLIENTS=$CLIENTS BLOB_SIZE=$BLOB_SIZE), $(nproc) cores, load average $LOAD_START at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end.

| measure | direct from the upstream | through the mirror (first pull) | mirror ÷ direct | goal | met |
|---|---|---|---|---|---|
| pull $BLOB_SIZE (MB/s, median of $RUNS) | $D_RATE_M | $M_RATE_M | $R_RATE | ≥ 0.8 | $(goal "$R_RATE" '>=' 0.8) |
| time to first byte (ms, median of $RUNS) | $D_TTFB_M | $M_TTFB_M | $R_TTFB | ≤ 2 | $(goal "$R_TTFB" '<=' 2) |
| for reference: push of the blob into the upstream (berth-load push-chunked, $CHUNK chunks, MB/s) | $PUSH_RATE (push) | $M_RATE_M | $(ratio "$M_RATE_M" "$PUSH_RATE") (÷ push) | (information) | |
| for reference: sha256 of $BLOB_SIZE on one core (berth-load hash-rate, MB/s) | 0.8 × direct = $(calc "0.8 * $D_RATE_M") | $HASH_RATE (sha256) | $(ratio "$M_RATE_M" "$HASH_RATE") (÷ sha256) | (information) | |
| CPU seconds the servers spent per pull (upstream; upstream + mirror) | $D_CPU_M | $M_CPU_M | $(ratio "$M_CPU_M" "$D_CPU_M") | (information) | |

Runs: direct ${D_RATE[*]} MB/s, first byte ${D_TTFB[*]} ms; mirror ${M_RATE[*]} MB/s, first byte ${M_TTFB[*]} ms.

| $CLIENTS clients, one uncached $BLOB_SIZE blob, fresh mirror | result | goal | met |
|---|---|---|---|
| bytes the upstream sent (response bytes delta) | $sent ($R_SENT × the blob) in $gets blob GETs | ≈ 1 × | $(goal "$R_SENT" '<' 1.01) |
| aggregate rate to the clients | $AGG MB/s ($CLIENTS × $SIZE bytes in $WALL s) | (information) | |
| clients fed by the fetch another started (berth_mirror_joined_fetches_total) | $joined | (information) | |

Run time $(( $(date +%s) - STARTED )) s after the build.
EOF
