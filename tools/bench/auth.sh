#!/usr/bin/env bash
# What access control costs, in one run, over loopback, release build:
#   (a) manifest GET req/s with wrk (16 connections, 2 threads) against berth without access
#       control, with a bearer token (token mode) and with Basic credentials (basic mode);
#   (b) token issuance: GET /token req/s for one credential (wrk; the verified login is
#       cached) and first logins/s, each verifying an argon2id hash at the default cost
#       (USERS distinct users, PARALLEL curl processes at a time).
# Prints a markdown table.
#
# Usage: tools/bench/auth.sh [--keep] [--dir DIR]
# Environment: WRK_SECONDS (default 8), USERS (default 64), PARALLEL (default 2).
set -euo pipefail

WRK_SECONDS=${WRK_SECONDS:-8}
USERS=${USERS:-64}
PARALLEL=${PARALLEL:-2}
MANIFEST_TYPE='application/vnd.oci.image.manifest.v1+json'

KEEP=0
DIR=""
while [ $# -gt 0 ]; do
  case "$1" in
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
log() { echo "[auth-bench] $*" >&2; }
. "$(dirname "$0")/lib.sh"

need=()
for tool in wrk curl python3; do command -v "$tool" >/dev/null || need+=("$tool"); done
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  apt-get install -y "${need[@]}" >&2
fi

log "building"
(cd "$ROOT" && cargo build --release -p berth >&2)

if [ -z "$DIR" ]; then DIR=$(mktemp -d /var/tmp/berth-auth.XXXXXX); else mkdir -p "$DIR"; fi
DIR=$(cd "$DIR" && pwd)
log "work directory $DIR"
STARTED=$(date +%s)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ "$KEEP" = 0 ]; then rm -rf "$DIR"; else log "kept $DIR"; fi
}
trap cleanup EXIT


serve() { # name data-dir [flags...] -> sets URL_<name>
  local name=$1 data=$2 port
  shift 2
  port=$(free_port)
  BERTH_ADMIN_PASSWORD=bench-admin-pw "$BERTH" serve --data "$data" --listen "127.0.0.1:$port" "$@" \
    >"$DIR/$name.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 300); do
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/v2/" || true)
    if [ "$code" = 200 ] || [ "$code" = 401 ]; then break; fi
    sleep 0.1
  done
  printf -v "URL_$name" '%s' "http://127.0.0.1:$port"
}

sha() { sha256sum | cut -d' ' -f1; }

push_manifest() { # url authorization-header -> prints the manifest URL
  local url=$1 auth=$2 config digest cdigest body mdigest
  config='{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
  cdigest=sha256:$(printf '%s' "$config" | sha)
  curl -fsS -o /dev/null -H "$auth" --data-binary "$config" \
    "$url/v2/bench/manifest/blobs/uploads/?digest=$cdigest"
  body="{\"schemaVersion\":2,\"mediaType\":\"$MANIFEST_TYPE\",\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"$cdigest\",\"size\":${#config}},\"layers\":[]}"
  curl -fsS -o /dev/null -X PUT -H "$auth" -H "Content-Type: $MANIFEST_TYPE" --data-binary "$body" \
    "$url/v2/bench/manifest/manifests/v1"
  echo "$url/v2/bench/manifest/manifests/v1"
}

wrk_rps() { # label url [header]
  local out
  out=$(wrk -t2 -c16 -d"${WRK_SECONDS}s" -H "Accept: $MANIFEST_TYPE" ${3:+-H "$3"} "$2")
  echo "$out" >>"$DIR/wrk-$1.txt"
  if grep -q 'Non-2xx' <<<"$out"; then
    log "$1 answered with errors:"; grep 'Non-2xx' <<<"$out" >&2; exit 1
  fi
  awk '/^Requests\/sec:/ { print $2 }' <<<"$out"
}

# ---- (a) manifest GETs ----------------------------------------------------------------------
serve none "$DIR/none"
NOAUTH_URL=$(push_manifest "$URL_none" "X-Bench: none")

log "seeding $USERS users for the login benchmark"
mkdir -p "$DIR/token"
for i in $(seq "$USERS"); do
  echo "user-pw-$i" | "$BERTH" user add "u$i" --password-stdin --data "$DIR/token" >/dev/null
done
serve token "$DIR/token" --auth-mode token
ADMIN_BASIC="Authorization: Basic $(printf 'admin:bench-admin-pw' | base64)"
TOKEN=$(curl -fsS -H "$ADMIN_BASIC" \
  "$URL_token/token?service=berth&scope=repository:bench/manifest:pull,push" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
TOKEN_URL=$(push_manifest "$URL_token" "Authorization: Bearer $TOKEN")

log "manifest GETs, no access control"
RPS_NONE=$(wrk_rps none "$NOAUTH_URL")
log "manifest GETs, bearer token"
RPS_BEARER=$(wrk_rps bearer "$TOKEN_URL" "Authorization: Bearer $TOKEN")
log "manifest GETs, Basic credentials"
RPS_BASIC=$(wrk_rps basic "$TOKEN_URL" "$ADMIN_BASIC")

# ---- (b) token issuance ---------------------------------------------------------------------
log "token requests for one credential"
RPS_TOKEN=$(wrk_rps token-endpoint \
  "$URL_token/token?service=berth&scope=repository:bench/manifest:pull" "$ADMIN_BASIC")
log "first logins of $USERS users, $PARALLEL at a time"
T0=$(date +%s.%N)
seq "$USERS" | xargs -P "$PARALLEL" -I{} curl -fsS -o /dev/null -u "u{}:user-pw-{}" \
  "$URL_token/token?service=berth&scope=repository:bench/manifest:pull"
T1=$(date +%s.%N)
LOGINS=$(awk "BEGIN { printf \"%.1f\", $USERS / ($T1 - $T0) }")
HASHES=$(curl -fsS -H "$ADMIN_BASIC" "$URL_token/metrics" |
  awk '/^berth_auth_password_hashes_total / { print $2 }')

ratio() { awk "BEGIN { printf \"%.2f\", $1 / $2 }"; }
echo
echo "## Access control benchmark, $(date -u +%Y-%m-%d) ($(nproc) CPUs, load at start $LOAD_START)"
echo
echo "| What | Result |"
echo "|---|---|"
echo "| manifest GET, no access control (wrk -t2 -c16, ${WRK_SECONDS} s) | $RPS_NONE req/s |"
echo "| manifest GET, bearer token (token mode) | $RPS_BEARER req/s ($(ratio "$RPS_BEARER" "$RPS_NONE")× no auth; goal ≥ 0.8×) |"
echo "| manifest GET, Basic credentials (token mode accepts Basic) | $RPS_BASIC req/s ($(ratio "$RPS_BASIC" "$RPS_NONE")× no auth) |"
echo "| GET /token, one credential (login cached) | $RPS_TOKEN tokens/s |"
echo "| first logins, argon2id at the default cost, $PARALLEL at a time | $LOGINS logins/s ($USERS users) |"
echo "| password hashes computed by the server during the whole run | $HASHES |"
echo
echo "Run time $(( $(date +%s) - STARTED )) s after the build."
