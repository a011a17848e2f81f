#!/usr/bin/env bash
# Throughput and peak memory of the socket path: sfreplay (unlimited) streams the bench trace
# into `sfprocessor -driver socket`, which runs each pipeline in bench/pipelines except
# json-file (disk-bound) — reader → JSON → null, and reader → policy engine → JSON → null.
#
#   bench/socket.sh                  # 5M records (bench/run.sh's trace, generated once)
#   RECORDS=1000000 bench/socket.sh  # a smaller input
#
# The socket holds only a few messages, so sfreplay runs at the pace the processor reads:
# its records/s is the socket path's throughput. Prints, per pipeline, the replay's elapsed
# seconds and SysFlow records/s, and the CPU seconds (user + sys) and peak RSS of both
# processes (on a shared machine the CPU seconds are the steadier figure).
set -euo pipefail
cd "$(dirname "$0")/.."

RECORDS="${RECORDS:-5000000}"
OUT=bench/out
mkdir -p "$OUT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
cargo build --release -q -p sfprocessor -p sfreplay -p sysflow-tracegen
BIN="$CARGO_TARGET_DIR/release"

TRACE="$OUT/bench-$RECORDS.sf"
if [ ! -f "$TRACE" ]; then
  "$BIN/sftracegen" --records "$RECORDS" --seed 11 --scenario mixed --rotate-every 20000 --out "$TRACE"
fi
echo "input: $TRACE ($(du -h "$TRACE" | cut -f1), $RECORDS SysFlow records)"
SOCK="$OUT/socket-bench.sock"
printf '%-12s %10s %14s %12s %12s %12s %12s\n' pipeline elapsed_s records_per_s proc_cpu_s proc_peak_MB replay_cpu_s replay_peak_MB
for name in json-null policy-alert; do
  p=bench/pipelines/$name.json
  /usr/bin/time -f "%U %S %M" -o "$OUT/$name.socket.time" \
    "$BIN/sfprocessor" -log info -config "$p" -driver socket "$SOCK" >"$OUT/$name.socket.log" 2>&1 &
  pid=$!
  for _ in $(seq 200); do [ -S "$SOCK" ] && break; sleep 0.05; done
  /usr/bin/time -f "%U %S %M" -o "$OUT/$name.replay.time" \
    "$BIN/sfreplay" --socket "$SOCK" "$TRACE" 2>"$OUT/$name.replay.log"
  # /usr/bin/time's child is sfprocessor: SIGTERM it (it drains and exits 0).
  kill -TERM "$(pgrep -P "$pid")"
  wait "$pid"
  grep -q "records in $RECORDS," "$OUT/$name.socket.log" || { echo "$name: the processor did not read $RECORDS records" >&2; exit 1; }
  line=$(grep 'sfreplay: sent' "$OUT/$name.replay.log")
  secs=$(sed -E 's/.* in ([0-9.]+) s:.*/\1/' <<<"$line")
  rate=$(sed -E 's/.*: ([0-9]+) records\/s.*/\1/' <<<"$line")
  read -r pu ps pm <"$OUT/$name.socket.time"
  read -r ru rs rm <"$OUT/$name.replay.time"
  awk -v n="$name" -v e="$secs" -v r="$rate" -v pc="$pu" -v ps="$ps" -v pm="$pm" -v rc="$ru" -v rs="$rs" -v rm="$rm" \
    'BEGIN { printf "%-12s %10.2f %14d %12.2f %12.1f %12.2f %12.1f\n", n, e, r, pc + ps, pm / 1024, rc + rs, rm / 1024 }'
done
rm -f "$SOCK"
