#!/usr/bin/env bash
# Throughput and peak memory of the hot path on a generated trace.
#
#   bench/run.sh                 # 5M records, every pipeline in bench/pipelines
#   RECORDS=1000000 bench/run.sh # a smaller input
#   SFPROCESSOR_ARGS="-metrics 127.0.0.1:0" bench/run.sh  # extra flags for every pipeline run
#
# The input is written once by sftracegen (seeded, collector-like rotation: a header and
# REUP entities every 20k records) and kept in bench/out/. For each pipeline the script
# prints elapsed seconds, CPU seconds, peak RSS and records/s (flat records exported).
set -euo pipefail
cd "$(dirname "$0")/.."

RECORDS="${RECORDS:-5000000}"
# Word-split on purpose: a list of extra flags.
read -r -a EXTRA_ARGS <<<"${SFPROCESSOR_ARGS:-}"
OUT=bench/out
mkdir -p "$OUT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
cargo build --release -q -p sfprocessor -p sysflow-tracegen -p sysflow-avro-drivers --example decode_speed
BIN="$CARGO_TARGET_DIR/release"

TRACE="$OUT/bench-$RECORDS.sf"
if [ ! -f "$TRACE" ]; then
  "$BIN/sftracegen" --records "$RECORDS" --seed 11 --scenario mixed --rotate-every 20000 --out "$TRACE"
fi

echo "input: $TRACE ($(du -h "$TRACE" | cut -f1), $RECORDS SysFlow records)"
echo
echo "== decode only (the ceiling)"
mkdir -p "$OUT/decode/traces"
ln -sf "$(pwd)/$TRACE" "$OUT/decode/traces/bench.sf"
"$BIN/examples/decode_speed" 1 "$OUT/decode"
echo
printf '%-12s %10s %10s %10s %12s %14s\n' pipeline elapsed_s cpu_s peak_MB flat_records records_per_s
for p in bench/pipelines/*.json; do
  name=$(basename "$p" .json)
  log="$OUT/$name.log"
  /usr/bin/time -f "%e %U %S %M" -o "$OUT/$name.time" \
    "$BIN/sfprocessor" -log info ${EXTRA_ARGS[@]+"${EXTRA_ARGS[@]}"} -config "$p" "$TRACE" >"$log" 2>&1
  read -r elapsed user sys rss <"$OUT/$name.time"
  flat=$(grep -o 'flat_records_out=[0-9]*' "$log" | head -1 | cut -d= -f2)
  awk -v n="$name" -v e="$elapsed" -v u="$user" -v s="$sys" -v r="$rss" -v f="$flat" \
    'BEGIN { printf "%-12s %10.2f %10.2f %10.1f %12d %14.0f\n", n, e, u + s, r / 1024, f, f / e }'
done
rm -f "$OUT/export.json"
