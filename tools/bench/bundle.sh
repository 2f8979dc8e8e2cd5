#!/usr/bin/env bash
# Air-gapped transfer, side by side in one run on one disk:
#   - export of a ~2 GiB bundle (4 images, 21 layers from 1 KiB to 512 MiB) from a stopped data
#     directory, against a plain `cp` + `sync` of a file of the same size (goal ≥ 0.8×);
#   - import of that bundle into a fresh stopped data directory (`--data`) and into a running
#     `berth serve` (`--url`), against the durable disk bandwidth (dd, conv=fdatasync) and the
#     sha256 rate of one core (`berth-load hash-rate`) (goal ≥ 0.8× the lower of the two). The
#     bundle is read from the page cache, as from a medium of its own; an import reading it
#     uncached from the data disk itself is measured too, beside cp + sync.
# Prints a markdown table. Disk use: about 5 × the bundle at the peak.
#
# Usage: tools/bench/bundle.sh [--keep] [--dir DIR]
#   --keep       keep the work directory
#   --dir DIR    work directory; it must be on the disk under test (default: /var/tmp/berth-bundle.*)
# Environment: RUNS (timed repetitions of each step, median kept; default 3).
set -euo pipefail

RUNS=${RUNS:-3}
KEEP=0
DIR=""
while [ $# -gt 0 ]; do
  case "$1" in
    --keep) KEEP=1 ;;
    --dir) DIR="$2"; shift ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
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

log "building"
(cd "$ROOT" && cargo build --release -p berth -p berth-load >&2)

if [ -z "$DIR" ]; then DIR=$(mktemp -d /var/tmp/berth-bundle.XXXXXX); else mkdir -p "$DIR"; fi
DIR=$(cd "$DIR" && pwd)
log "work directory $DIR"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

SERVER=""
cleanup() {
  if [ -n "$SERVER" ]; then kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; fi
  if [ "$KEEP" = 0 ]; then rm -rf "$DIR"; else log "kept $DIR"; fi
}
trap cleanup EXIT

calc() { awk "BEGIN { printf \"%.${2:-1}f\", $1 }"; }
median() { tr ' ' '\n' <<<"$*" | sed '/^$/d' | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
now() { date +%s.%N; }
settle() { sync; if [ -w /proc/sys/vm/drop_caches ]; then echo 1 >/proc/sys/vm/drop_caches; fi; }

# ---- the images: OCI layouts of random (incompressible) blobs --------------------------------
log "making the images"
python3 - "$DIR/layouts" <<'PY'
import hashlib, json, os, sys
root = sys.argv[1]
KiB, MiB = 1 << 10, 1 << 20
images = {
    "app": [1 * KiB, 64 * KiB, 1 * MiB, 16 * MiB, 512 * MiB],
    "db": [4 * KiB, 256 * KiB, 4 * MiB, 64 * MiB, 512 * MiB],
    "ml": [2 * KiB, 8 * MiB, 32 * MiB, 64 * MiB, 128 * MiB, 256 * MiB],
    "tools": [16 * KiB, 1 * MiB, 16 * MiB, 128 * MiB, 256 * MiB],
}
def put(layout, data_iter):
    h, tmp = hashlib.sha256(), os.path.join(layout, "blob.tmp")
    size = 0
    with open(tmp, "wb") as f:
        for part in data_iter:
            h.update(part); f.write(part); size += len(part)
    os.rename(tmp, os.path.join(layout, "blobs", "sha256", h.hexdigest()))
    return {"digest": "sha256:" + h.hexdigest(), "size": size}
def random_bytes(n):
    while n > 0:
        k = min(n, 16 * MiB); n -= k
        yield os.urandom(k)
for name, sizes in images.items():
    layout = os.path.join(root, name)
    os.makedirs(os.path.join(layout, "blobs", "sha256"))
    with open(os.path.join(layout, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    layers = [dict(put(layout, random_bytes(s)), mediaType="application/vnd.oci.image.layer.v1.tar")
              for s in sizes]
    config = {"architecture": "amd64", "os": "linux",
              "rootfs": {"type": "layers", "diff_ids": [l["digest"] for l in layers]}}
    cfg = dict(put(layout, [json.dumps(config).encode()]),
               mediaType="application/vnd.oci.image.config.v1+json")
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": cfg, "layers": layers}
    m = dict(put(layout, [json.dumps(manifest).encode()]),
             mediaType="application/vnd.oci.image.manifest.v1+json",
             annotations={"org.opencontainers.image.ref.name": "v1"})
    with open(os.path.join(layout, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "manifests": [m]}, f)
PY
SOURCE=$DIR/source
for image in app db ml tools; do
  "$BERTH" import --data "$SOURCE" "$DIR/layouts/$image" --repo "bench/bundle/$image" >/dev/null
done
rm -rf "$DIR/layouts"

# ---- references: durable disk bandwidth, sha256 rate ------------------------------------------
dd_mbps() {
  local out secs
  settle
  out=$(dd if=/dev/zero of="$DIR/dd.bin" bs=16M count=128 conv=fdatasync 2>&1 | tail -1)
  rm -f "$DIR/dd.bin"
  secs=$(sed -E 's/.* copied, ([0-9.]+) s.*/\1/' <<<"$out")
  calc "2147483648 / $secs / 1e6"
}
hash_mbps() { "$LOAD" hash-rate --size 2GiB | tr ' ' '\n' | sed -n 's|^MB/s=||p'; }

# ---- export against cp ------------------------------------------------------------------------
BUNDLE=$DIR/bundle.tar
EXPORT=() CP=() DD=() HASH=() IMPORT_DATA=() IMPORT_COLD=() IMPORT_URL=()
for run in $(seq "$RUNS"); do
  log "round $run of $RUNS"
  DD+=("$(dd_mbps)")
  HASH+=("$(hash_mbps)")

  rm -f "$BUNDLE"
  settle
  t0=$(now)
  "$BERTH" export --data "$SOURCE" 'bench/bundle/*' -o "$BUNDLE" >/dev/null
  t1=$(now)
  SIZE=$(stat -c %s "$BUNDLE")
  EXPORT+=("$(calc "$SIZE / ($t1 - $t0) / 1e6")")

  # cp reads the bundle from the disk as export reads the segments: both start uncached.
  settle
  t0=$(now)
  cp "$BUNDLE" "$DIR/copy.tar"
  sync "$DIR/copy.tar"
  t1=$(now)
  rm -f "$DIR/copy.tar"
  CP+=("$(calc "$SIZE / ($t1 - $t0) / 1e6")")

  # Import into a stopped data directory: the bundle read from the page cache, as from a
  # medium of its own (a USB disk), so the data disk only writes, as dd does ...
  rm -rf "$DIR/imported"
  settle
  cat "$BUNDLE" >/dev/null
  t0=$(now)
  "$BERTH" import --data "$DIR/imported" "$BUNDLE" >/dev/null
  t1=$(now)
  rm -rf "$DIR/imported"
  IMPORT_DATA+=("$(calc "$SIZE / ($t1 - $t0) / 1e6")")
  # ... and read from the data disk itself, uncached, which is what cp + sync measures.
  settle
  t0=$(now)
  "$BERTH" import --data "$DIR/imported" "$BUNDLE" >/dev/null
  t1=$(now)
  rm -rf "$DIR/imported"
  IMPORT_COLD+=("$(calc "$SIZE / ($t1 - $t0) / 1e6")")

  # Import into a running berth over loopback.
  port=$(free_port)
  "$BERTH" serve --listen "127.0.0.1:$port" --data "$DIR/served" >"$DIR/serve.log" 2>&1 &
  SERVER=$!
  for _ in $(seq 100); do curl -fs -o /dev/null "http://127.0.0.1:$port/v2/" && break; sleep 0.1; done
  settle
  cat "$BUNDLE" >/dev/null
  t0=$(now)
  "$BERTH" import --url "http://127.0.0.1:$port" "$BUNDLE" >/dev/null
  t1=$(now)
  kill "$SERVER"; wait "$SERVER" || true; SERVER=""
  rm -rf "$DIR/served"
  IMPORT_URL+=("$(calc "$SIZE / ($t1 - $t0) / 1e6")")
done
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

dd=$(median "${DD[*]}"); hash=$(median "${HASH[*]}"); cp=$(median "${CP[*]}")
export_rate=$(median "${EXPORT[*]}")
data_rate=$(median "${IMPORT_DATA[*]}"); url_rate=$(median "${IMPORT_URL[*]}")
cold_rate=$(median "${IMPORT_COLD[*]}")
floor=$(awk -v a="$dd" -v b="$hash" 'BEGIN { print (a + 0 < b + 0) ? a : b }')
met() { awk -v r="$1" 'BEGIN { print (r >= 0.8) ? "yes" : "**NO**" }'; }
r_export=$(calc "$export_rate / $cp" 2)
r_data=$(calc "$data_rate / $floor" 2)
r_url=$(calc "$url_rate / $floor" 2)
r_cold=$(calc "$cold_rate / $cp" 2)

echo
echo "Bundle of $(calc "$SIZE / 1048576" 0) MiB (4 images, 21 layers, 1 KiB to 512 MiB); medians of $RUNS; load average $LOAD_START → $LOAD_END."
echo
echo "| measure | MB/s | reference | reference MB/s | ratio | goal | met |"
echo "|---|---|---|---|---|---|---|"
echo "| export (\`berth export --data\`) | $export_rate | cp + sync of the bundle | $cp | $r_export | ≥ 0.8 | $(met "$r_export") |"
echo "| import into a stopped data dir (\`--data\`) | $data_rate | lower of dd $dd and sha256 $hash | $floor | $r_data | ≥ 0.8 | $(met "$r_data") |"
echo "| … the bundle read uncached from the same disk | $cold_rate | cp + sync of the bundle | $cp | $r_cold | (information) | |"
echo "| import into a running berth (\`--url\`) | $url_rate | lower of dd $dd and sha256 $hash | $floor | $r_url | ≥ 0.8 | $(met "$r_url") |"
echo
echo "Raw: dd ${DD[*]}; sha256 ${HASH[*]}; cp ${CP[*]}; export ${EXPORT[*]}; import --data ${IMPORT_DATA[*]}; same disk ${IMPORT_COLD[*]}; import --url ${IMPORT_URL[*]}."
