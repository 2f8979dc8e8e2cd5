#!/usr/bin/env bash
# berth's read hot paths against nginx serving the same bytes as static files, side by side in
# one run, over loopback, release build, default settings (request log on, to a file):
#   manifest GET and HEAD, by tag and by digest, and blob HEAD, at 16 and at 256
#   connections; nginx (`worker_processes auto`, access log on to a file on the data disk,
#   `sendfile on`) answers GET/HEAD of the manifest bytes (with the manifest's Content-Type)
#   and HEAD of the layer blob. Each berth run is followed at once by its nginx run. GETs are
#   measured with wrk -t2, HEADs with ab -k (wrk cannot read HEAD responses).
# Prints a markdown table with req/s, berth ÷ nginx and the goal (≥ 0.8).
#
# Usage: tools/bench/hotpaths.sh [--keep] [--dir DIR]
#   --keep       keep the work directory (data, logs, wrk output)
#   --dir DIR    work directory on the data disk (default: /var/tmp/berth-hotpaths.*)
# Environment: WRK_SECONDS (default 6), CONNECTIONS (default "16 256"), GOAL (default 0.8),
#   BERTH_ARGS (extra `berth serve` flags for experiments; the default run measures the
#   default settings), BERTH_BIN (a `berth` binary to measure instead of this tree's release
#   build, e.g. an earlier build for a before/after comparison).
set -euo pipefail

WRK_SECONDS=${WRK_SECONDS:-6}
CONNECTIONS=${CONNECTIONS:-16 256}
GOAL=${GOAL:-0.8}
BERTH_ARGS=${BERTH_ARGS:-}
MANIFEST_TYPE='application/vnd.oci.image.manifest.v1+json'

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
BERTH=${BERTH_BIN:-$TARGET/release/berth}
LOAD=$TARGET/release/berth-load
log() { echo "[hotpaths] $*" >&2; }
. "$(dirname "$0")/lib.sh"

need=()
for tool in wrk nginx curl python3; do command -v "$tool" >/dev/null || need+=("$tool"); done
command -v ab >/dev/null || need+=(apache2-utils)
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  apt-get install -y "${need[@]}" >&2
fi

log "building"
(cd "$ROOT" && cargo build --release -p berth -p berth-load >&2)

if [ -z "$DIR" ]; then DIR=$(mktemp -d /var/tmp/berth-hotpaths.XXXXXX); else mkdir -p "$DIR"; fi
DIR=$(cd "$DIR" && pwd)
chmod 755 "$DIR" # nginx workers run unprivileged and must reach the static files
log "work directory $DIR"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ "$KEEP" = 0 ]; then rm -rf "$DIR"; else log "kept $DIR"; fi
}
trap cleanup EXIT




calc() { awk "BEGIN { printf \"%.${2:-2}f\", $1 }"; }

# ---- berth, with one image ------------------------------------------------------------------
port=$(free_port)
B="http://127.0.0.1:$port"
mkdir -p "$DIR/berth"
# shellcheck disable=SC2086 # BERTH_ARGS is a list of flags
"$BERTH" serve --listen "127.0.0.1:$port" --data "$DIR/berth" $BERTH_ARGS >"$DIR/berth.log" 2>&1 &
PIDS+=($!)
wait_http "$B/v2/"
line=$("$LOAD" --registry "$B" push-manifest --repo bench/hot --tag v1)
DIGEST=$(field "$line" digest)

# ---- nginx, serving the same bytes -----------------------------------------------------------
mkdir -p "$DIR/static" "$DIR/nginx"
curl -fs -o "$DIR/static/manifest" -H "Accept: $MANIFEST_TYPE" "$B/v2/bench/hot/manifests/$DIGEST"
LAYER=$(python3 -c 'import json, sys; print(json.load(sys.stdin)["layers"][0]["digest"])' \
  <"$DIR/static/manifest")
log "pushed bench/hot:v1 $DIGEST (layer $LAYER)"
curl -fs -o "$DIR/static/blob" "$B/v2/bench/hot/blobs/$LAYER"
if [ "sha256:$(sha256sum "$DIR/static/manifest" | cut -d' ' -f1)" != "$DIGEST" ]; then
  log "the static manifest does not match $DIGEST"; exit 1
fi
nport=$(free_port)
N="http://127.0.0.1:$nport"
cat >"$DIR/nginx/nginx.conf" <<EOF
worker_processes auto;
pid $DIR/nginx/nginx.pid;
error_log $DIR/nginx/error.log;
daemon off;
events { worker_connections 1024; }
http {
  access_log $DIR/nginx/access.log;
  client_body_temp_path $DIR/nginx/body;
  proxy_temp_path $DIR/nginx/proxy;
  fastcgi_temp_path $DIR/nginx/fastcgi;
  uwsgi_temp_path $DIR/nginx/uwsgi;
  scgi_temp_path $DIR/nginx/scgi;
  sendfile on;
  tcp_nopush on;
  types { }
  server {
    listen 127.0.0.1:$nport;
    root $DIR/static;
    location = /manifest { default_type $MANIFEST_TYPE; }
    location = /blob { default_type application/octet-stream; }
  }
}
EOF
nginx -p "$DIR/nginx" -c "$DIR/nginx/nginx.conf" &
PIDS+=($!)
wait_http "$N/manifest"
got=$(curl -fsI "$N/manifest" | tr -d '\r' | awk -F': ' 'tolower($1) == "content-type" { print $2 }')
if [ "$got" != "$MANIFEST_TYPE" ]; then log "nginx serves the manifest as $got"; exit 1; fi

# ---- wrk, berth then nginx for each case --------------------------------------------------
# name | method | berth path | nginx path
CASES=(
  "manifest GET by tag|GET|/v2/bench/hot/manifests/v1|/manifest"
  "manifest GET by digest|GET|/v2/bench/hot/manifests/$DIGEST|/manifest"
  "manifest HEAD by tag|HEAD|/v2/bench/hot/manifests/v1|/manifest"
  "manifest HEAD by digest|HEAD|/v2/bench/hot/manifests/$DIGEST|/manifest"
  "blob HEAD|HEAD|/v2/bench/hot/blobs/$LAYER|/blob"
)

# wrk for GET; wrk cannot measure HEAD (it waits for the body its Content-Length announces),
# so HEAD goes through ab (keep-alive, one client thread) for both servers alike.
run_load() { # label method url connections -> req/s
  local label=$1 method=$2 url=$3 c=$4 out
  if [ "$method" = HEAD ]; then
    out=$(ab -q -k -i -c "$c" -t "$WRK_SECONDS" -n 100000000 -H "Accept: $MANIFEST_TYPE" "$url" 2>&1)
  else
    out=$(wrk -t2 -c"$c" -d"${WRK_SECONDS}s" -H "Accept: $MANIFEST_TYPE" "$url")
  fi
  echo "== $label $method $url c=$c" >>"$DIR/load.txt"
  echo "$out" >>"$DIR/load.txt"
  if grep -q -e 'Non-2xx' -e 'Socket errors' <<<"$out" \
    || grep -Eq '^(Failed requests|Write errors): +[1-9]' <<<"$out"; then
    log "$label: errors"; grep -E 'Non-2xx|Socket errors|Failed|Write errors' <<<"$out" >&2; exit 1
  fi
  awk '/^Requests\/sec:/ { print $2 } /^Requests per second:/ { print $4 }' <<<"$out"
}

ROWS=()
for c in $CONNECTIONS; do
  for case in "${CASES[@]}"; do
    IFS='|' read -r name method bpath npath <<<"$case"
    b=$(run_load "berth $name" "$method" "$B$bpath" "$c")
    n=$(run_load "nginx $name" "$method" "$N$npath" "$c")
    r=$(calc "$b / $n")
    met=$(awk -v r="$r" -v g="$GOAL" 'BEGIN { print (r + 0 >= g + 0) ? "yes" : "**NO**" }')
    log "$name, $c connections: berth $b, nginx $n req/s ($r)"
    ROWS+=("| $name | $c | $b | $n | $r | ≥ $GOAL | $met |")
  done
done

LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
# Every request must have left its line in berth's log (the request log is part of the cost).
LOGGED=$(grep -c 'berth::access' "$DIR/berth.log" || true)

cat <<EOF

Command: \`tools/bench/hotpaths.sh\` (WRK_SECONDS=$WRK_SECONDS CONNECTIONS="$CONNECTIONS" BERTH_ARGS="$BERTH_ARGS"; GET with wrk -t2, HEAD with ab -k -i; berth's request log and nginx's access log on, both to files in $DIR)
Machine: $(nproc) cores, $(uname -r), $(date -u +%Y-%m-%dT%H:%MZ), berth $([ -n "${BERTH_BIN:-}" ] && echo "$BERTH_BIN" || (cd "$ROOT" && git rev-parse --short HEAD)), load average $LOAD_START at the start and $LOAD_END at the end

| request | connections | berth req/s | nginx req/s | berth ÷ nginx | goal | met |
|---|---|---|---|---|---|---|
$(printf '%s\n' "${ROWS[@]}")

berth logged $LOGGED request lines in the run.
EOF
