#!/usr/bin/env bash
# Documents/s into the Elasticsearch/OpenSearch-API test servers: sfprocessor's `es`
# exporter against the server's own ingest rate measured with a plain bulk client (curl
# posting the same ECS documents in bulks of the same size), plus sfprocessor's peak RSS.
# The processor is not the bottleneck when its rate is close to curl's.
#
#   bench/es_ingest.sh                                   # k8s_small.sf, noida-db and osmem-server
#   TRACE=../shared/data/traces/mon.1531776682.sf SERVERS=noida bench/es_ingest.sh
#
# Servers come from the test venv (.ci/run, section "test servers"); each run gets a new index.
set -euo pipefail
cd "$(dirname "$0")/.."

TRACE="${TRACE:-../shared/data/traces/k8s_small.sf}"
SERVERS="${SERVERS:-noida osmem}"
WORKERS="${WORKERS:-2}"
FLUSH_BYTES="${FLUSH_BYTES:-5000000}"
VENV="${SFP_TEST_VENV:-$HOME/.cache/sfprocessor-test-servers/venv}"
OUT=bench/out/es
rm -rf "$OUT" && mkdir -p "$OUT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
cargo build --release -q -p sfprocessor
BIN="$CARGO_TARGET_DIR/release/sfprocessor"
SITE=$(echo "$VENV"/lib/python*/site-packages)

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; return 1; }

# The ECS documents of the trace, and curl's bulk bodies of about FLUSH_BYTES each.
cat >"$OUT/file.json" <<JSON
{"pipeline":[{"processor":"sysflowreader","handler":"flattener","in":"sysflow sysflowchan","out":"flat flattenerchan"},
 {"processor":"exporter","in":"flat flattenerchan","export":"file","format":"ecs","file.path":"$OUT/docs.json"}]}
JSON
"$BIN" -log error -config "$OUT/file.json" "$TRACE"
docs=$(wc -l <"$OUT/docs.json")
python3 - "$OUT" "$FLUSH_BYTES" <<'PY'
import json, sys
out, limit = sys.argv[1], int(sys.argv[2])
part, size, n = [], 0, 0
def flush():
    global part, size, n
    if part:
        open(f"{out}/bulk-{n:04d}.ndjson", "w").write("".join(part)); n += 1
    part, size = [], 0
for i, line in enumerate(open(f"{out}/docs.json")):
    if size + len(line) > limit: flush()
    part.append(json.dumps({"create": {"_index": "curl", "_id": str(i)}}) + "\n" + line); size += len(line)
flush()
PY

printf '%-6s %8s %-12s %10s %12s %10s\n' server docs client seconds docs_per_s peak_MB
for server in $SERVERS; do
  port=$(free_port)
  case "$server" in
    noida) "$SITE/noida_db/noida-db" start --data-dir "$OUT/noida-$port" --only elasticsearch --elasticsearch-port "$port" >"$OUT/$server.log" 2>&1 & ;;
    osmem) "$SITE/osmem_server/bin/osmem-server" -addr "127.0.0.1:$port" -no-stdin-watch -no-ja </dev/null >"$OUT/$server.log" 2>&1 & ;;
    *) echo "unknown server $server" >&2; exit 2 ;;
  esac
  pid=$!
  wait_port "$port"
  url="http://127.0.0.1:$port"

  start=$(date +%s.%N)
  for body in "$OUT"/bulk-*.ndjson; do
    curl -sf -o /dev/null -H 'Content-Type: application/x-ndjson' --data-binary "@$body" "$url/_bulk"
  done
  end=$(date +%s.%N)
  curl -sf -XPOST "$url/curl/_refresh" >/dev/null
  n=$(curl -sf "$url/curl/_count" | python3 -c 'import json,sys; print(json.load(sys.stdin)["count"])')
  awk -v s="$server" -v n="$n" -v a="$start" -v b="$end" 'BEGIN { printf "%-6s %8d %-12s %10.2f %12.0f %10s\n", s, n, "curl", b - a, n / (b - a), "-" }'

  cat >"$OUT/es.json" <<JSON
{"pipeline":[{"processor":"sysflowreader","handler":"flattener","in":"sysflow sysflowchan","out":"flat flattenerchan"},
 {"processor":"exporter","in":"flat flattenerchan","export":"es","format":"ecs","es.addresses":"$url","es.index":"sfp",
  "es.bulk.numWorkers":"$WORKERS","es.bulk.flushBuffer":"$FLUSH_BYTES","delivery.stopTimeout":"120s"}]}
JSON
  /usr/bin/time -f "%e %M" -o "$OUT/$server.time" "$BIN" -log info -config "$OUT/es.json" "$TRACE" >"$OUT/$server-sfp.log" 2>&1 || true
  read -r elapsed rss <"$OUT/$server.time"
  curl -sf -XPOST "$url/sfp/_refresh" >/dev/null
  n=$(curl -sf "$url/sfp/_count" | python3 -c 'import json,sys; print(json.load(sys.stdin)["count"])')
  awk -v s="$server" -v n="$n" -v e="$elapsed" -v r="$rss" -v w="$WORKERS" 'BEGIN { printf "%-6s %8d %-12s %10.2f %12.0f %10.1f\n", s, n, "sfp " w "w", e, n / e, r / 1024 }'
  grep -o 'records_exported=[0-9]*\|delivery_[a-z]*=[0-9]*' "$OUT/$server-sfp.log" | tr '\n' ' ' | sed 's/^/       /'; echo
  kill "$pid"; wait "$pid" 2>/dev/null || true
done
echo "($docs documents of $TRACE per run)"
