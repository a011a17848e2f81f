#!/usr/bin/env bash
# Builds the container image (packaging/container/build.sh) and checks it without starting a
# container (crun cannot here): `podman create` + `podman mount` give the image's root, and
# its binaries run in it with chroot, as user sysflow (uid 1001), with the image's environment.
#   1. layout, variables, user, volume and entrypoint as upstream's image;
#   2. sfprocessor -test -config /usr/local/sysflow/conf/pipeline.json against a real rsyslog;
#   3. the entrypoint (upstream's variables → flags) serving /sock/sysflow.sock, the image's
#      sfreplay sending config/demo.sf into it, the alerts arriving at rsyslog, exit 0 on SIGTERM.
# Needs root, podman (or buildah) and rsyslogd. Any mismatch fails.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
WORK=$(mktemp -d)
PASSED=0
CTR=
RSYSLOG_PID=
SERVICE_PID=
cleanup() {
    if [ -n "$SERVICE_PID" ]; then pkill -TERM -P "$SERVICE_PID" 2>/dev/null || true; kill "$SERVICE_PID" 2>/dev/null || true; fi
    [ -n "$RSYSLOG_PID" ] && kill "$RSYSLOG_PID" 2>/dev/null || true
    if [ -n "$CTR" ]; then podman umount "$CTR" >/dev/null 2>&1 || true; podman rm -f "$CTR" >/dev/null 2>&1 || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT
fail() { echo "container check FAILED: $*" >&2; echo "container: $PASSED passed, 1 failed"; exit 1; }
ok() { PASSED=$((PASSED + 1)); echo "ok: $*"; }

start=$SECONDS
bash packaging/container/build.sh | tee "$WORK/build.log"
IMAGE=$(tail -1 "$WORK/build.log")

echo "== image configuration"
podman image inspect --format '{{json .Config}}' "$IMAGE" >"$WORK/config.json"
python3 - "$WORK/config.json" <<'PY' || fail "the image configuration differs from upstream's (above)"
import json, sys
c = json.load(open(sys.argv[1]))
env = dict(e.split("=", 1) for e in c.get("Env", []))
want = {
    "INPUT_PATH": "/sock/sysflow.sock", "DRIVER": "socket",
    "DRIVER_DIR": "/usr/local/sysflow/resources/drivers", "PLUGIN_DIR": "/usr/local/sysflow/resources/plugins",
    "LOG_LEVEL": "info", "CONFIG_PATH": "/usr/local/sysflow/conf/pipeline.json",
}
bad = [f"{k}={env.get(k)!r}, want {v!r}" for k, v in want.items() if env.get(k) != v]
if c.get("User") != "sysflow": bad.append(f"User {c.get('User')!r}, want 'sysflow'")
if "/sock" not in (c.get("Volumes") or {}): bad.append(f"Volumes {c.get('Volumes')}, want /sock")
if c.get("Entrypoint") != ["/usr/local/sysflow/bin/sfprocessor-entrypoint"]: bad.append(f"Entrypoint {c.get('Entrypoint')}")
for b in bad: print(b, file=sys.stderr)
sys.exit(1 if bad else 0)
PY
ok "image variables, user sysflow, VOLUME /sock, entrypoint"
# The image's environment, for the commands run in its root.
python3 -c 'import json,sys; [print(e) for e in json.load(open(sys.argv[1]))["Env"]]' "$WORK/config.json" >"$WORK/env"

echo "== docker-compose.yml"
python3 - "$IMAGE" <<'PY' || fail "packaging/container/docker-compose.yml does not match the image (above)"
import json, os, sys, yaml
d = "packaging/container"
compose = yaml.safe_load(open(f"{d}/docker-compose.yml"))
svc = compose["services"]["sf-processor"]
bad = []
if svc["image"] != sys.argv[1].rsplit(":", 1)[0] + ":latest": bad.append(f"image {svc['image']} is not what build.sh tags")
if "socket-vol:/sock/" not in svc["volumes"] or "socket-vol:/sock/" not in compose["services"]["sf-collector"]["volumes"]:
    bad.append("processor and collector do not share the socket volume at /sock")
if compose["services"]["sf-collector"]["environment"]["SOCK_FILE"] != svc["environment"]["INPUT_PATH"]:
    bad.append("the collector's SOCK_FILE is not the processor's INPUT_PATH")
pipeline = json.load(open(f"{d}/pipeline.json"))["pipeline"]
for env_file in svc["env_file"]:
    for line in open(os.path.join(d, env_file)):
        line = line.strip()
        if not line or line.startswith("#"): continue
        name = line.split("=", 1)[0]
        proc, _, key = name.lower().partition("_")
        key = key.replace("_", ".")
        if name in ("LOG_LEVEL",): continue
        if not any(b.get("processor") == proc and key in b for b in pipeline):
            bad.append(f"{env_file}: {name} sets no key of the image's pipeline (no '{key}' in a '{proc}' block)")
for b in bad: print(b, file=sys.stderr)
sys.exit(1 if bad else 0)
PY
ok "docker-compose.yml: the built image, the collector's socket volume, processor.env naming keys of the image's pipeline"

CTR=$(podman create "$IMAGE")
MNT=$(podman mount "$CTR")
for path in bin/sfprocessor bin/sfreplay bin/sfprocessor-entrypoint; do
    [ -x "$MNT/usr/local/sysflow/$path" ] || fail "/usr/local/sysflow/$path is missing or not executable"
done
[ -f "$MNT/usr/local/sysflow/conf/pipeline.json" ] || fail "/usr/local/sysflow/conf/pipeline.json is missing"
for dir in drivers plugins policies; do
    [ -d "$MNT/usr/local/sysflow/resources/$dir" ] || fail "/usr/local/sysflow/resources/$dir is missing"
done
[ -f "$MNT/usr/local/sysflow/resources/policies/rules.yaml" ] || fail "the default policies are missing"
grep -q '^sysflow:x:1001:1001:' "$MNT/etc/passwd" || fail "no user sysflow with uid 1001 in /etc/passwd"
[ "$(stat -c %u "$MNT/sock")" = 1001 ] || fail "/sock is not owned by sysflow"
ok "layout: /usr/local/sysflow/{bin,conf/pipeline.json,resources/{drivers,plugins,policies}}, uid 1001 owns /sock"

# In the image's root, as sysflow, with the image's environment plus "$@" (NAME=value ...).
# chroot and env exec, so a backgrounded `in_image` is the image's process itself (and gets SIGTERM).
in_image() { chroot --userspec=1001:1001 "$MNT" /usr/bin/env -i $(cat "$WORK/env") HOME=/usr/local/sysflow "$@"; }

echo "== rsyslog (the syslog endpoint the pipeline sends alerts to)"
command -v rsyslogd >/dev/null || fail "rsyslogd is missing (apt-get install -y rsyslog)"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$WORK/rsyslog"
cat >"$WORK/rsyslog.conf" <<CONF
global(workDirectory="$WORK/rsyslog")
module(load="imtcp")
input(type="imtcp" address="127.0.0.1" port="$PORT")
template(name="line" type="string" string="msgid=%msgid% msg=%msg%\n")
*.* action(type="omfile" file="$WORK/syslog.out" template="line")
CONF
rsyslogd -n -f "$WORK/rsyslog.conf" -i "$WORK/rsyslog/pid" >"$WORK/rsyslog.log" 2>&1 &
RSYSLOG_PID=$!
for _ in $(seq 100); do (echo >"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
# docker-compose's env file, then this rsyslog's address over its endpoint.
SYSLOG_ENV=($(grep -v '^\s*#' packaging/container/processor.env | grep '=') EXPORTER_SYSLOG_HOST=127.0.0.1 EXPORTER_SYSLOG_PORT="$PORT")

echo "== sfprocessor -test in the image"
in_image "${SYSLOG_ENV[@]}" /usr/local/sysflow/bin/sfprocessor -test -config /usr/local/sysflow/conf/pipeline.json \
    >"$WORK/test.log" 2>&1 || { cat "$WORK/test.log" >&2; fail "sfprocessor -test -config /usr/local/sysflow/conf/pipeline.json failed in the image"; }
grep -q 'loaded .* rules' "$WORK/test.log" || { cat "$WORK/test.log" >&2; fail "-test did not load the image's policies"; }
ok "sfprocessor -test -config /usr/local/sysflow/conf/pipeline.json (as sysflow, in the image's root)"

echo "== the entrypoint's arguments"
# '-flags' are added (here -test, which validates and exits); an empty variable drops its flag
# (sfprocessor refuses a repeated -config, so a kept `-config ""` would fail this).
in_image "${SYSLOG_ENV[@]}" CONFIG_PATH= /usr/local/sysflow/bin/sfprocessor-entrypoint -test -config /usr/local/sysflow/conf/pipeline.json \
    >"$WORK/entry-test.log" 2>&1 \
    || { cat "$WORK/entry-test.log" >&2; fail "sfprocessor-entrypoint -test failed"; }
grep -q 'Health checks: passed' "$WORK/entry-test.log" || { cat "$WORK/entry-test.log" >&2; fail "sfprocessor-entrypoint -test did not validate the pipeline"; }
# Any other first argument runs instead of sfprocessor.
[ "$(in_image /usr/local/sysflow/bin/sfprocessor-entrypoint /usr/local/sysflow/bin/sfreplay --version)" = "sfreplay $(sed -n 's/^version = "\(.*\)"/\1/p' tools/replay/Cargo.toml)" ] \
    || fail "sfprocessor-entrypoint COMMAND did not run COMMAND"
ok "entrypoint: '-test -config …' are passed on, an empty CONFIG_PATH drops its -config, a command runs instead"

echo "== the entrypoint serving /sock/sysflow.sock; the image's sfreplay sends config/demo.sf"
cp config/demo.sf "$MNT/tmp/demo.sf"
chmod 644 "$MNT/tmp/demo.sf"
(exec chroot --userspec=1001:1001 "$MNT" /usr/bin/env -i $(cat "$WORK/env") HOME=/usr/local/sysflow "${SYSLOG_ENV[@]}" \
    /usr/local/sysflow/bin/sfprocessor-entrypoint) >"$WORK/service.log" 2>&1 &
SERVICE_PID=$!
for _ in $(seq 100); do [ -S "$MNT/sock/sysflow.sock" ] && break; sleep 0.1; done
[ -S "$MNT/sock/sysflow.sock" ] || { cat "$WORK/service.log" >&2; fail "the entrypoint did not listen on /sock/sysflow.sock"; }
expected_args='/usr/local/sysflow/bin/sfprocessor -log info -driver socket -driverdir /usr/local/sysflow/resources/drivers -plugdir /usr/local/sysflow/resources/plugins -config /usr/local/sysflow/conf/pipeline.json /sock/sysflow.sock'
args=$(tr '\0' ' ' <"/proc/$SERVICE_PID/cmdline" | sed 's/ $//')
[ "$args" = "$expected_args" ] || fail "the entrypoint ran '$args', want '$expected_args'"
ok "the entrypoint maps upstream's variables to flags: $args"
in_image /usr/local/sysflow/bin/sfreplay --socket /sock/sysflow.sock /tmp/demo.sf 2>"$WORK/replay.err" \
    || { cat "$WORK/replay.err" >&2; fail "the image's sfreplay failed"; }
grep -q 'sent 3000 records' "$WORK/replay.err" || fail "sfreplay did not send demo.sf's 3000 records: $(cat "$WORK/replay.err")"
# Wait for the alerts to reach rsyslog, then stop the service as docker stop does.
for _ in $(seq 100); do [ -s "$WORK/syslog.out" ] && break; sleep 0.1; done
kill -TERM "$SERVICE_PID"
wait "$SERVICE_PID" || { cat "$WORK/service.log" >&2; fail "the service exited non-zero after SIGTERM"; }
SERVICE_PID=
grep -q 'records in 3000,' "$WORK/service.log" || { cat "$WORK/service.log" >&2; fail "the service did not read 3000 records"; }
# The same trace through the file driver, alerts to the terminal: what the socket path must deliver.
expected=$(in_image EXPORTER_EXPORT=terminal /usr/local/sysflow/bin/sfprocessor -log quiet -config /usr/local/sysflow/conf/pipeline.json /tmp/demo.sf | grep -c '^{"version"' || true)
[ "${expected:-0}" -gt 0 ] || fail "the image's sfprocessor found no alert in demo.sf with the file driver"
count_alerts() { grep -c '^msgid=sysflow msg={.*"policies":' "$WORK/syslog.out" 2>/dev/null || true; }
for _ in $(seq 100); do [ "$(count_alerts)" = "$expected" ] && break; sleep 0.1; done
alerts=$(count_alerts)
[ "$alerts" = "$expected" ] || { cat "$WORK/service.log" >&2; fail "$alerts alerts reached rsyslog, the file driver finds $expected ($WORK/syslog.out: $(head -c 300 "$WORK/syslog.out" 2>/dev/null))"; }
ok "entrypoint + sfreplay in the image: 3000 records in, $alerts alerts at rsyslog (as many as the file driver finds), exit 0 on SIGTERM"
echo "container check took $((SECONDS - start)) s"
echo "container: $PASSED passed, 0 failed"
