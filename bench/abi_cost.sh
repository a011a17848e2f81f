#!/usr/bin/env bash
# Cost of crossing the plugin ABI: reader → passthrough (.so) → exporter(null) against
# reader → exporter(null), on the same generated trace.
#
#   bench/abi_cost.sh                 # 1M records, 3 runs each, best run reported
#   RECORDS=5000000 RUNS=5 bench/abi_cost.sh
#
# The passthrough plugin hands each batch on unchanged (batches are shared RArcs), so the
# difference is one more node, one more channel hop and the FFI call per batch.
set -euo pipefail
cd "$(dirname "$0")/.."

RECORDS="${RECORDS:-1000000}"
RUNS="${RUNS:-3}"
OUT=bench/out
mkdir -p "$OUT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
cargo build --release -q -p sfprocessor -p sysflow-tracegen -p passthrough
BIN="$CARGO_TARGET_DIR/release"

TRACE="$OUT/bench-$RECORDS.sf"
if [ ! -f "$TRACE" ]; then
  "$BIN/sftracegen" --records "$RECORDS" --seed 11 --scenario mixed --rotate-every 20000 --out "$TRACE"
fi

# The loader refuses group/other-writable plugin directories and files.
PLUGDIR="$OUT/abi-plugins"
mkdir -p "$PLUGDIR"
chmod 0755 "$PLUGDIR"
install -m 0644 "$BIN/libpassthrough.so" "$PLUGDIR/passthrough.so"

READER='{"processor": "sysflowreader", "handler": "flattener", "in": "sysflow sysflowchan", "out": "flat flattenerchan"}'
cat >"$OUT/abi-direct.json" <<JSON
{"pipeline": [$READER,
  {"processor": "exporter", "in": "flat flattenerchan", "export": "null"}]}
JSON
cat >"$OUT/abi-plugin.json" <<JSON
{"pipeline": [$READER,
  {"processor": "passthrough", "in": "flat flattenerchan", "out": "p flattenerchan"},
  {"processor": "exporter", "in": "p flattenerchan", "export": "null"}]}
JSON

# Prints the best elapsed seconds of $RUNS runs of pipeline $1.
best_time() {
  local best=""
  for _ in $(seq "$RUNS"); do
    /usr/bin/time -f "%e" -o "$OUT/abi.time" \
      "$BIN/sfprocessor" -log error -config "$1" -plugdir "$PLUGDIR" "$TRACE" >/dev/null 2>"$OUT/abi.err" ||
      { cat "$OUT/abi.err" >&2; exit 1; }
    local t
    t=$(tail -1 "$OUT/abi.time")
    if [ -z "$best" ] || awk -v a="$t" -v b="$best" 'BEGIN { exit !(a < b) }'; then best="$t"; fi
  done
  echo "$best"
}

echo "input: $TRACE ($RECORDS SysFlow records), best of $RUNS runs"
direct=$(best_time "$OUT/abi-direct.json")
plugin=$(best_time "$OUT/abi-plugin.json")
awk -v n="$RECORDS" -v d="$direct" -v p="$plugin" 'BEGIN {
  printf "%-44s %10s %14s\n", "pipeline", "elapsed_s", "records_per_s"
  printf "%-44s %10.2f %14.0f\n", "reader -> exporter(null)", d, n / d
  printf "%-44s %10.2f %14.0f\n", "reader -> passthrough.so -> exporter(null)", p, n / p
  printf "ABI + extra node cost: %+.1f%% elapsed\n", (p - d) / d * 100
}'
