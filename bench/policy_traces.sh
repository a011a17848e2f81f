#!/usr/bin/env bash
# The policy engine's benchmark from issue 4, on real traces: every shared trace
# (../shared/data/traces) repeated COPIES times as a directory of files, read by the file
# driver → reader → policy engine (upstream's runtimeintegrity policies, alert mode,
# 2 workers) → exporter (null). Each copy is a separate file, so per-file entity state and
# caches start cold as with a directory of collector files.
#
#   bench/policy_traces.sh                    # 9 copies (306 files), 5 runs, median reported
#   COPIES=20 RUNS=3 POLICIES=config/policies bench/policy_traces.sh
set -euo pipefail
cd "$(dirname "$0")/.."

DATA="${SYSFLOW_TEST_DATA:-$(cd .. && pwd)/shared/data}"
COPIES="${COPIES:-9}"
RUNS="${RUNS:-5}"
POLICIES="${POLICIES:-$DATA/policies/runtimeintegrity}"
if [ ! -d "$DATA/traces" ]; then
  echo "the shared traces are not at $DATA/traces (set SYSFLOW_TEST_DATA)" >&2
  exit 1
fi
OUT=bench/out
DIR="$OUT/traces-x$COPIES"
mkdir -p "$DIR"
for i in $(seq -w 1 "$COPIES"); do
  for t in "$DATA"/traces/*.sf; do
    ln -sfn "$t" "$DIR/$i-$(basename "$t")"
  done
done
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
cargo build --release -q -p sfprocessor
BIN="$CARGO_TARGET_DIR/release/sfprocessor"
PIPE="$OUT/policy-traces.json"
cat >"$PIPE" <<JSON
{"pipeline": [
  {"processor": "sysflowreader", "handler": "flattener", "in": "sysflow sysflowchan", "out": "flat flattenerchan"},
  {"processor": "policyengine", "in": "flat flattenerchan", "out": "evt eventchan", "mode": "alert",
   "policies": "$(cd "$POLICIES" && pwd)", "concurrency": "2"},
  {"processor": "exporter", "in": "evt eventchan", "export": "null", "format": "json"}]}
JSON

echo "input: $DIR ($(find "$DIR" -name '*.sf' | wc -l) files), policies: $POLICIES"
printf '%-5s %10s %10s %10s %12s %14s\n' run elapsed_s cpu_s peak_MB flat_records records_per_s
results=()
for r in $(seq 1 "$RUNS"); do
  log="$OUT/policy-traces.log"
  /usr/bin/time -f "%e %U %S %M" -o "$OUT/policy-traces.time" "$BIN" -log info -config "$PIPE" "$DIR" >"$log" 2>&1
  read -r elapsed user sys rss <"$OUT/policy-traces.time"
  # Records the engine evaluated: the reader's output.
  flat=$(grep -o 'flat_records_out=[0-9]*' "$log" | head -1 | cut -d= -f2)
  line=$(awk -v r="$r" -v e="$elapsed" -v u="$user" -v s="$sys" -v m="$rss" -v f="$flat" \
    'BEGIN { printf "%-5s %10.2f %10.2f %10.1f %12d %14.0f", r, e, u + s, m / 1024, f, f / e }')
  echo "$line"
  results+=("$line")
done
printf '%s\n' "${results[@]}" | sort -k2,2n | awk -v n="$RUNS" 'NR == int((n + 1) / 2) { print "median: " $6 " records/s, " $4 " MB peak RSS, " $2 " s" }'
