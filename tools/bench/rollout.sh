#!/usr/bin/env bash
# A rollout: CLIENTS nodes pulling one image at once, against berth and, in the same run, CNCF
# distribution (Debian `docker-registry`) as the reference. `berth-load rollout` pushes an image
# (a config and layers of LAYERS sizes) and starts every client together; each, on its own
# connection, resolves the tag (HEAD), GETs the manifest, the config and the layers, checking
# every digest. Reports p50/p99/max time per client and the wall time of the whole rollout, and
# each server's RssAnon before and at its peak during the pull (/proc/PID/status, every 50 ms).
#
# Usage: tools/bench/rollout.sh [--no-distribution] [--keep] [--dir DIR]
# Environment: CLIENTS (default 200), LAYERS (default 1MiB,8MiB,64MiB), THREADS (client runtime
#   threads, default 1), BERTH_ARGS (extra `berth serve` flags for experiments).
set -euo pipefail

CLIENTS=${CLIENTS:-200}
LAYERS=${LAYERS:-1MiB,8MiB,64MiB}
THREADS=${THREADS:-1}
BERTH_ARGS=${BERTH_ARGS:-}

WITH_DISTRIBUTION=1
KEEP=0
DIR=""
while [ $# -gt 0 ]; do
  case "$1" in
    --no-distribution) WITH_DISTRIBUTION=0 ;;
    --keep) KEEP=1 ;;
    --dir) DIR="$2"; shift ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BERTH=$TARGET/release/berth
LOAD=$TARGET/release/berth-load
log() { echo "[rollout] $*" >&2; }
. "$(dirname "$0")/lib.sh"

need=()
for tool in curl python3; do command -v "$tool" >/dev/null || need+=("$tool"); done
if [ "$WITH_DISTRIBUTION" = 1 ] && ! command -v docker-registry >/dev/null; then
  need+=(docker-registry)
fi
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  apt-get install -y "${need[@]}" >&2
fi

log "building"
(cd "$ROOT" && cargo build --release -p berth -p berth-load >&2)

if [ -z "$DIR" ]; then DIR=$(mktemp -d /var/tmp/berth-rollout.XXXXXX); else mkdir -p "$DIR"; fi
DIR=$(cd "$DIR" && pwd)
log "work directory $DIR"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ "$KEEP" = 0 ]; then rm -rf "$DIR"; else log "kept $DIR"; fi
}
trap cleanup EXIT




status_kib() { # pid key -> value in kB from /proc/pid/status
  awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"
}

# Largest RssAnon of a process until the stop file appears, written to the out file (kB).
sample_peak() { # pid stop-file out-file
  local peak=0 v
  while [ ! -e "$2" ]; do
    v=$(status_kib "$1" RssAnon 2>/dev/null || echo 0)
    if [ "${v:-0}" -gt "$peak" ]; then peak=$v; fi
    sleep 0.05
  done
  echo "$peak" >"$3"
}

declare -A URL PID
REGS=(berth)
port=$(free_port)
mkdir -p "$DIR/berth"
# shellcheck disable=SC2086 # BERTH_ARGS is a list of flags
"$BERTH" serve --listen "127.0.0.1:$port" --data "$DIR/berth" $BERTH_ARGS >"$DIR/berth.log" 2>&1 &
PID[berth]=$!; PIDS+=($!)
URL[berth]="http://127.0.0.1:$port"

if [ "$WITH_DISTRIBUTION" = 1 ]; then
  port=$(free_port)
  mkdir -p "$DIR/distribution"
  cat >"$DIR/distribution.yml" <<EOF
version: 0.1
log:
  level: info
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: $DIR/distribution
http:
  addr: 127.0.0.1:$port
EOF
  docker-registry serve "$DIR/distribution.yml" >"$DIR/distribution.log" 2>&1 &
  PID[distribution]=$!; PIDS+=($!)
  URL[distribution]="http://127.0.0.1:$port"
  REGS+=(distribution)
fi
for r in "${REGS[@]}"; do wait_http "${URL[$r]}/v2/"; done
sleep 1

declare -A LINE IDLE PEAK
for r in "${REGS[@]}"; do
  IDLE[$r]=$(status_kib "${PID[$r]}" RssAnon)
  rm -f "$DIR/stop"
  sample_peak "${PID[$r]}" "$DIR/stop" "$DIR/peak-$r" &
  sampler=$!
  LINE[$r]=$("$LOAD" --threads "$THREADS" --registry "${URL[$r]}" rollout --clients "$CLIENTS" \
    --layers "$LAYERS" --repo bench/rollout)
  touch "$DIR/stop"; wait "$sampler"
  PEAK[$r]=$(cat "$DIR/peak-$r")
  echo "$r ${LINE[$r]}" >>"$DIR/results.txt"
  log "$r: ${LINE[$r]} (RssAnon idle ${IDLE[$r]} kB, peak ${PEAK[$r]} kB)"
done
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

mib() { awk "BEGIN { printf \"%.1f\", $1 / 1024 }"; }
ratio() { awk "BEGIN { printf \"%.2f\", $1 / $2 }"; }

cat <<EOF

Command: \`tools/bench/rollout.sh$([ "$WITH_DISTRIBUTION" = 0 ] && echo " --no-distribution")\` (CLIENTS=$CLIENTS LAYERS=$LAYERS THREADS=$THREADS BERTH_ARGS="$BERTH_ARGS")
Machine: $(nproc) cores, $(uname -r), $(date -u +%Y-%m-%dT%H:%MZ), berth $(cd "$ROOT" && git rev-parse --short HEAD), load average $LOAD_START at the start and $LOAD_END at the end

| registry | p50 per client (s) | p99 per client (s) | max (s) | total (s) | aggregate MB/s | RssAnon idle (MiB) | RssAnon peak (MiB) |
|---|---|---|---|---|---|---|---|
EOF
for r in "${REGS[@]}"; do
  l=${LINE[$r]}
  echo "| $r | $(field "$l" p50_s) | $(field "$l" p99_s) | $(field "$l" max_s) | $(field "$l" total_s) | $(field "$l" MB/s) | $(mib "${IDLE[$r]}") | $(mib "${PEAK[$r]}") |"
done
if [ "$WITH_DISTRIBUTION" = 1 ]; then
  echo
  echo "berth ÷ distribution, total time: $(ratio "$(field "${LINE[berth]}" total_s)" "$(field "${LINE[distribution]}" total_s)") (lower is faster)."
fi
echo "Each client: $(field "${LINE[berth]}" bytes_per_client) bytes (config and layers $LAYERS) plus the manifest."
