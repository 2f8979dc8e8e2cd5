#!/usr/bin/env bash
# Side-by-side benchmark on one machine, in one run, over loopback only:
#   berth, CNCF distribution (Debian docker-registry) and nginx serving the same blob as a file.
# Measures durable disk bandwidth (dd), chunked push of a 1 GiB blob, pull with curl, 4 KiB
# pushes/s from 4 clients, manifest GETs/s with wrk, idle RSS; prints a markdown table with the
# ratios and the goals of the performance section. The chunked pushes also go to a hash-only
# sink (`berth-load hash-sink`), the ceiling any digest-verifying registry has on this machine.
#
# Usage: tools/bench/compare.sh [--no-berth] [--keep] [--dir DIR]
#   --no-berth   measure distribution and nginx only (berth not built or not ready)
#   --keep       keep the work directory (data, logs, raw results)
#   --dir DIR    work directory; it must be on the disk under test (default: /var/tmp/berth-bench.*)
# Environment: RUNS (pushes per registry, best kept; default 2), PULLS (default 3),
#   SMALL_COUNT (4 KiB pushes per registry; default 2000), WRK_SECONDS (default 8),
#   BLOB_SIZE (default 1GiB), CHUNK (default 16MiB), BERTH_ARGS (extra `berth serve` flags for
#   experiments, e.g. "--read-verification off"; the default run measures the default settings).
set -euo pipefail

RUNS=${RUNS:-2}
PULLS=${PULLS:-3}
SMALL_COUNT=${SMALL_COUNT:-2000}
WRK_SECONDS=${WRK_SECONDS:-8}
BLOB_SIZE=${BLOB_SIZE:-1GiB}
CHUNK=${CHUNK:-16MiB}
BERTH_ARGS=${BERTH_ARGS:-}
MANIFEST_TYPE='application/vnd.oci.image.manifest.v1+json'

WITH_BERTH=1
KEEP=0
DIR=""
while [ $# -gt 0 ]; do
  case "$1" in
    --no-berth) WITH_BERTH=0 ;;
    --keep) KEEP=1 ;;
    --dir) DIR="$2"; shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
LOAD=$TARGET/release/berth-load
BERTH=$TARGET/release/berth

log() { echo "[bench] $*" >&2; }
. "$(dirname "$0")/lib.sh"

# ---- prerequisites -------------------------------------------------------------------------
need=()
command -v docker-registry >/dev/null || need+=(docker-registry)
command -v nginx >/dev/null || need+=(nginx)
command -v wrk >/dev/null || need+=(wrk)
command -v curl >/dev/null || need+=(curl)
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  apt-get install -y "${need[@]}" >&2
fi

log "building"
if [ "$WITH_BERTH" = 1 ]; then
  (cd "$ROOT" && cargo build --release -p berth -p berth-load >&2)
else
  (cd "$ROOT" && cargo build --release -p berth-load >&2)
fi

if [ -z "$DIR" ]; then
  DIR=$(mktemp -d /var/tmp/berth-bench.XXXXXX)
else
  mkdir -p "$DIR"
fi
DIR=$(cd "$DIR" && pwd)
chmod 755 "$DIR" # nginx workers run unprivileged and must reach the static file
log "work directory $DIR"
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




calc() { awk "BEGIN { printf \"%.${2:-1}f\", $1 }"; }

max() { awk -v a="$1" -v b="$2" 'BEGIN { print (a+0 > b+0) ? a : b }'; }

status_kib() { # pid key -> value in kB from /proc/pid/status
  awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"
}

# Writing into the page cache costs several times more when the kernel must first reclaim
# cached pages than when free pages are at hand (measured here: 0.25 s per GiB with free memory,
# 0.5-1.3 s under reclaim). Every measured write (dd, each push) starts from the same state:
# dirty data written back and clean cache dropped.
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
# This virtual disk varies from run to run by up to 2x: take the median of three.
DD_RUNS="$(dd_mbps) $(dd_mbps) $(dd_mbps)"
DD=$(tr ' ' '\n' <<<"$DD_RUNS" | sort -g | sed -n 2p)
log "dd: $DD_RUNS MB/s"

# ---- start the servers ---------------------------------------------------------------------
declare -A URL PID
REGS=()

if [ "$WITH_BERTH" = 1 ]; then
  port=$(free_port)
  mkdir -p "$DIR/berth"
  # shellcheck disable=SC2086 # BERTH_ARGS is a list of flags
  "$BERTH" serve --listen "127.0.0.1:$port" --data "$DIR/berth" $BERTH_ARGS >"$DIR/berth.log" 2>&1 &
  PID[berth]=$!; PIDS+=($!)
  URL[berth]="http://127.0.0.1:$port"
  REGS+=(berth)
fi

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
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
EOF
docker-registry serve "$DIR/distribution.yml" >"$DIR/distribution.log" 2>&1 &
PID[distribution]=$!; PIDS+=($!)
URL[distribution]="http://127.0.0.1:$port"
REGS+=(distribution)

# The hash-only sink: checks each pushed blob's sha256 and keeps nothing, so its push rate is
# the most any digest-verifying registry can reach on this machine. It takes part in the push
# rounds only.
port=$(free_port)
"$LOAD" hash-sink --listen "127.0.0.1:$port" 2>"$DIR/sink.log" &
PIDS+=($!)
URL[sink]="http://127.0.0.1:$port"

for r in "${REGS[@]}" sink; do wait_http "${URL[$r]}/v2/"; done
sleep 2
declare -A RSS ANON RSS_AFTER ANON_AFTER
for r in "${REGS[@]}"; do
  RSS[$r]=$(status_kib "${PID[$r]}" VmRSS)
  ANON[$r]=$(status_kib "${PID[$r]}" RssAnon)
  log "$r idle: VmRSS ${RSS[$r]} kB, RssAnon ${ANON[$r]} kB"
done

# ---- chunked push --------------------------------------------------------------------------
declare -A PUSH PUSH_SYNC DIGEST
for r in "${REGS[@]}" sink; do PUSH[$r]=0; PUSH_SYNC[$r]=0; done
for run in $(seq "$RUNS"); do
  for r in "${REGS[@]}" sink; do
    settle_page_cache
    line=$("$LOAD" --registry "${URL[$r]}" push-chunked --size "$BLOB_SIZE" --chunk "$CHUNK" \
      --repo bench/chunked 2>/dev/null)
    echo "$r $line" >>"$DIR/results.txt"
    # A push acknowledged before its bytes are on disk still owes the disk that write: time
    # the sync that follows, so the durable rate can be compared too.
    t0=$(date +%s.%N); sync; t1=$(date +%s.%N)
    secs=$(field "$line" seconds); size=$(field "$line" size)
    mbps=$(field "$line" MB/s)
    durable=$(calc "$size / ($secs + $t1 - $t0) / 1e6")
    log "$r push run $run: $mbps MB/s ($durable MB/s including the sync after it)"
    PUSH[$r]=$(max "${PUSH[$r]}" "$mbps")
    PUSH_SYNC[$r]=$(max "${PUSH_SYNC[$r]}" "$durable")
    DIGEST[$r]=$(field "$line" digest)
  done
done

# ---- nginx serving the same bytes ----------------------------------------------------------
mkdir -p "$DIR/static" "$DIR/nginx"
curl -fs -o "$DIR/static/blob" "${URL[distribution]}/v2/bench/chunked/blobs/${DIGEST[distribution]}"
if [ "sha256:$(sha256sum "$DIR/static/blob" | cut -d' ' -f1)" != "${DIGEST[distribution]}" ]; then
  log "the static copy does not match ${DIGEST[distribution]}"; exit 1
fi
nport=$(free_port)
cat >"$DIR/nginx/nginx.conf" <<EOF
worker_processes 1;
pid $DIR/nginx/nginx.pid;
error_log $DIR/nginx/error.log;
daemon off;
events { worker_connections 256; }
http {
  access_log $DIR/nginx/access.log;
  client_body_temp_path $DIR/nginx/body;
  proxy_temp_path $DIR/nginx/proxy;
  fastcgi_temp_path $DIR/nginx/fastcgi;
  uwsgi_temp_path $DIR/nginx/uwsgi;
  scgi_temp_path $DIR/nginx/scgi;
  sendfile on;
  tcp_nopush on;
  server {
    listen 127.0.0.1:$nport;
    root $DIR/static;
  }
}
EOF
nginx -p "$DIR/nginx" -c "$DIR/nginx/nginx.conf" &
PIDS+=($!)
wait_http "http://127.0.0.1:$nport/blob"

# ---- pull with curl ------------------------------------------------------------------------
declare -A PULL
PULL_TARGETS=("${REGS[@]}" nginx)
for t in "${PULL_TARGETS[@]}"; do PULL[$t]=0; done
for run in $(seq "$PULLS"); do
  for t in "${PULL_TARGETS[@]}"; do
    if [ "$t" = nginx ]; then
      url="http://127.0.0.1:$nport/blob"
    else
      url="${URL[$t]}/v2/bench/chunked/blobs/${DIGEST[$t]}"
    fi
    read -r bytes secs < <(curl -fs -o /dev/null -w '%{size_download} %{time_total}\n' "$url")
    mbps=$(calc "$bytes / $secs / 1e6")
    echo "$t pull bytes=$bytes seconds=$secs MB/s=$mbps" >>"$DIR/results.txt"
    log "$t pull run $run: $mbps MB/s ($bytes bytes)"
    PULL[$t]=$(max "${PULL[$t]}" "$mbps")
  done
done

# ---- 4 KiB pushes from 4 clients -----------------------------------------------------------
declare -A SMALL SMALL_P99 SMALL_MODE
for r in "${REGS[@]}"; do
  sync
  line=$("$LOAD" --registry "${URL[$r]}" push-small --count "$SMALL_COUNT" --size 4KiB \
    --concurrency 4 --repo bench/small)
  echo "$r $line" >>"$DIR/results.txt"
  SMALL[$r]=$(field "$line" ops/s); SMALL_P99[$r]=$(field "$line" p99_ms)
  SMALL_MODE[$r]=$(field "$line" mode)
  log "$r small pushes: ${SMALL[$r]} ops/s (p99 ${SMALL_P99[$r]} ms, ${SMALL_MODE[$r]})"
done

# ---- manifest GET with wrk -----------------------------------------------------------------
declare -A MGET
for r in "${REGS[@]}"; do
  line=$("$LOAD" --registry "${URL[$r]}" push-manifest --repo bench/manifest --tag v1)
  murl=$(field "$line" url)
  out=$(wrk -t2 -c16 -d"${WRK_SECONDS}s" -H "Accept: $MANIFEST_TYPE" "$murl")
  echo "$out" >>"$DIR/wrk-$r.txt"
  if grep -q 'Non-2xx' <<<"$out"; then
    log "$r answered manifest GETs with errors:"; grep 'Non-2xx' <<<"$out" >&2; exit 1
  fi
  MGET[$r]=$(awk '/^Requests\/sec:/ { print $2 }' <<<"$out")
  log "$r manifest GET: ${MGET[$r]} req/s"
done

sleep 2
for r in "${REGS[@]}"; do
  RSS_AFTER[$r]=$(status_kib "${PID[$r]}" VmRSS)
  ANON_AFTER[$r]=$(status_kib "${PID[$r]}" RssAnon)
done

LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- table ---------------------------------------------------------------------------------
val() { # registry array-name -> value or "-"
  local -n a=$2
  if [ -n "${a[$1]+x}" ]; then echo "${a[$1]}"; else echo "-"; fi
}
ratio() { # a b -> a/b or "-"
  if [ "$1" = "-" ] || [ "$2" = "-" ]; then echo "-"; else calc "$1 / $2" 2; fi
}
goal() { # value op threshold -> yes/NO/-
  if [ "$1" = "-" ]; then echo "-"; return; fi
  if awk -v v="$1" -v t="$3" "BEGIN { exit !(v $2 t) }"; then echo "yes"; else echo "**NO**"; fi
}
mib() { if [ "$1" = "-" ]; then echo "-"; else calc "$1 / 1024" 1; fi; }

b_push=$(val berth PUSH); d_push=${PUSH[distribution]}; s_push=${PUSH[sink]}
b_pull=$(val berth PULL); d_pull=${PULL[distribution]}; n_pull=${PULL[nginx]}
b_small=$(val berth SMALL); d_small=${SMALL[distribution]}
b_mget=$(val berth MGET); d_mget=${MGET[distribution]}
b_rss=$(mib "$(val berth RSS)"); b_anon=$(mib "$(val berth ANON)")

cat <<EOF

Command: \`tools/bench/compare.sh$([ "$WITH_BERTH" = 0 ] && echo " --no-berth")\` (BERTH_ARGS="$BERTH_ARGS" RUNS=$RUNS PULLS=$PULLS SMALL_COUNT=$SMALL_COUNT WRK_SECONDS=$WRK_SECONDS BLOB_SIZE=$BLOB_SIZE CHUNK=$CHUNK)
Machine: $(nproc) cores, $(uname -r), data disk $(df --output=source "$DIR" | tail -1), $(date -u +%Y-%m-%dT%H:%MZ), load average $LOAD_START at the start and $LOAD_END at the end (other work on the machine skews every figure)

| measure | berth | distribution | nginx / dd | berth ÷ distribution | berth ÷ nginx / dd | goal | met |
|---|---|---|---|---|---|---|---|
| chunked push $BLOB_SIZE, $CHUNK chunks (MB/s) | $b_push | $d_push | dd $DD | $(ratio "$b_push" "$d_push") | $(ratio "$b_push" "$DD") | ≥ 2× distribution, ≥ 0.8× dd | $(goal "$(ratio "$b_push" "$d_push")" '>=' 2) / $(goal "$(ratio "$b_push" "$DD")" '>=' 0.8) |
| hash-only sink: receives and checks sha256, stores nothing (MB/s) | $s_push | | dd $DD | | $(ratio "$s_push" "$DD") | (the ceiling for any registry here) | |
| berth ÷ hash-only sink | $(ratio "$b_push" "$s_push") | $(ratio "$d_push" "$s_push") | | | | (information) | |
| same, including the sync after it (MB/s) | $(val berth PUSH_SYNC) | ${PUSH_SYNC[distribution]} | dd $DD | $(ratio "$(val berth PUSH_SYNC)" "${PUSH_SYNC[distribution]}") | $(ratio "$(val berth PUSH_SYNC)" "$DD") | (information) | |
| pull $BLOB_SIZE with curl (MB/s) | $b_pull | $d_pull | nginx $n_pull | $(ratio "$b_pull" "$d_pull") | $(ratio "$b_pull" "$n_pull") | ≥ 0.9× nginx, > distribution | $(goal "$(ratio "$b_pull" "$n_pull")" '>=' 0.9) / $(goal "$(ratio "$b_pull" "$d_pull")" '>' 1) |
| 4 KiB pushes/s, 4 clients | $b_small | $d_small | | $(ratio "$b_small" "$d_small") | | ≥ 3× distribution | $(goal "$(ratio "$b_small" "$d_small")" '>=' 3) |
| 4 KiB push p99 latency (ms) | $(val berth SMALL_P99) | ${SMALL_P99[distribution]} | | | | (information) | |
| manifest GET req/s, wrk 16 connections | $b_mget | $d_mget | | $(ratio "$b_mget" "$d_mget") | | ≥ 2× distribution | $(goal "$(ratio "$b_mget" "$d_mget")" '>=' 2) |
| idle RSS (MiB) | $b_rss | $(mib "${RSS[distribution]}") | | | | ≤ 20 MiB | $(goal "$b_rss" '<=' 20) |
| idle RssAnon (MiB) | $b_anon | $(mib "${ANON[distribution]}") | | | | (information) | |
| RSS / RssAnon after the run (MiB) | $(mib "$(val berth RSS_AFTER)") / $(mib "$(val berth ANON_AFTER)") | $(mib "${RSS_AFTER[distribution]}") / $(mib "${ANON_AFTER[distribution]}") | | | | (information) | |

dd runs: $DD_RUNS MB/s (median used). Pull of distribution ÷ nginx: $(ratio "$d_pull" "$n_pull"). Small pushes: berth ${SMALL_MODE[berth]:-n/a}, distribution ${SMALL_MODE[distribution]}. Best of $RUNS pushes and $PULLS pulls.
EOF
