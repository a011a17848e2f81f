#!/usr/bin/env bash
# Policy load time and peak memory on generated large policies (issue 10, item 8):
# a 100,000-item list (one line, as Falco lists are usually written), 20,000 exceptions
# (one per exception entry, two fields each), and a 20,000-term `or` chain on one
# attribute. Each file is parsed and compiled as the engine does at start-up by
# `--example policy_load`, under /usr/bin/time for the peak RSS.
#
#   bench/policy_load.sh                  # default sizes
#   LIST=200000 EXCEPTIONS=40000 OR=40000 bench/policy_load.sh
set -euo pipefail
cd "$(dirname "$0")/.."

LIST="${LIST:-100000}"
EXCEPTIONS="${EXCEPTIONS:-20000}"
OR="${OR:-20000}"
OUT=bench/out/policy-load
mkdir -p "$OUT"

{
  echo "- list: big_list"
  printf '  items: ['
  seq 1 "$LIST" | awk '{printf "%svalue%d", (NR > 1 ? ", " : ""), $1}'
  echo "]"
  printf -- "- rule: big list\n  desc: d\n  condition: sf.proc.name in (big_list)\n  priority: low\n"
} >"$OUT/list-$LIST.yaml"

{
  printf -- "- rule: many exceptions\n  desc: d\n  condition: sf.opflags = EXEC\n  priority: low\n  exceptions:\n"
  seq 1 "$EXCEPTIONS" | awk '{printf "    - name: ex%d\n      fields: [sf.proc.name, sf.file.path]\n      comps: [=, startswith]\n      values:\n        - [proc%d, /path/%d]\n", $1, $1, $1}'
} >"$OUT/exceptions-$EXCEPTIONS.yaml"

{
  printf -- "- rule: or chain\n  desc: d\n  priority: low\n  condition: sf.net.sip = 10.0.0.0"
  seq 1 "$OR" | awk '{printf " or sf.net.sip = 10.%d.%d.%d", int($1 / 65536) % 256, int($1 / 256) % 256, $1 % 256}'
  echo
} >"$OUT/or-$OR.yaml"

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
cargo build --release -q -p sysflow-policy-engine --example policy_load
BIN="$CARGO_TARGET_DIR/release/examples/policy_load"

printf '%-28s %10s %10s %10s\n' policy load_s cpu_s peak_MB
for f in "$OUT/list-$LIST.yaml" "$OUT/exceptions-$EXCEPTIONS.yaml" "$OUT/or-$OR.yaml"; do
  /usr/bin/time -f "%U %S %M" -o "$OUT/time" "$BIN" "$f" >"$OUT/load.txt"
  read -r _ load rules enabled <"$OUT/load.txt"
  read -r user sys rss <"$OUT/time"
  if [ "$enabled" != 1 ]; then
    echo "$f: expected 1 enabled rule, got $rules/$enabled" >&2
    exit 1
  fi
  awk -v f="$(basename "$f")" -v l="$load" -v u="$user" -v s="$sys" -v m="$rss" \
    'BEGIN { printf "%-28s %10.3f %10.2f %10.1f\n", f, l, u + s, m / 1024 }'
done
