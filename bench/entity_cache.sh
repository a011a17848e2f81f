#!/usr/bin/env bash
# Peak memory of the reader's entity cache on long unrotated streams: one header, then
# millions of records, as a long-lived socket stream or a collector without rotation.
#
#   bench/entity_cache.sh                     # 5M and 36M records
#   SIZES="1000000 5000000" bench/entity_cache.sh
#
# Each trace is written once by sftracegen (seed 11, mixed scenario, no --rotate-every)
# and kept in bench/out/. Each runs reader → flattener → JSON → null
# (bench/pipelines/json-null.json); the script prints elapsed seconds, CPU seconds, peak
# RSS (/usr/bin/time max RSS), flat records/s, and the reader's cache counters: the
# missing_* and evicted_* counters must be 0 (no entity lost), cache_peak_entities shows
# the bound. Peak RSS should stay flat in the stream length.
set -euo pipefail
cd "$(dirname "$0")/.."

SIZES="${SIZES:-5000000 36000000}"
OUT=bench/out
mkdir -p "$OUT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
cargo build --release -q -p sfprocessor -p sysflow-tracegen
BIN="$CARGO_TARGET_DIR/release"
PIPELINE=bench/pipelines/json-null.json

printf '%-10s %10s %10s %10s %12s %14s\n' records elapsed_s cpu_s peak_MB flat_records records_per_s
for n in $SIZES; do
  trace="$OUT/entity-cache-$n.sf"
  if [ ! -f "$trace" ]; then
    "$BIN/sftracegen" --records "$n" --seed 11 --scenario mixed --out "$trace" >&2
  fi
  log="$OUT/entity-cache-$n.log"
  /usr/bin/time -f "%e %U %S %M" -o "$OUT/entity-cache-$n.time" \
    "$BIN/sfprocessor" -log info -config "$PIPELINE" "$trace" >"$log" 2>&1
  read -r elapsed user sys rss <"$OUT/entity-cache-$n.time"
  flat=$(grep -o 'flat_records_out=[0-9]*' "$log" | head -1 | cut -d= -f2)
  awk -v n="$n" -v e="$elapsed" -v u="$user" -v s="$sys" -v r="$rss" -v f="$flat" \
    'BEGIN { printf "%-10d %10.2f %10.2f %10.1f %12d %14.0f\n", n, e, u + s, r / 1024, f, f / e }'
  grep -o '\(missing\|evicted\)_[a-z]*=[0-9]*\|cache_[a-z_]*=[0-9]*' "$log" | tr '\n' ' ' | sed 's/^/           /'
  echo
done
