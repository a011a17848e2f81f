#!/usr/bin/env bash
# Builds the packages (packaging/build.sh) and checks them without a running systemd:
# the .deb's, .rpm's and .tar.gz's file lists against the one list (host/Cargo.toml via
# packaging/assets.py), their conffiles / %config(noreplace), then installs the .deb with
# dpkg, verifies the unit, runs `sfprocessor -test` on the installed pipelines, upgrades it
# over an edited conffile (the edit must survive) and purges it. Any mismatch fails.
# Needs root (dpkg -i); `rpm` is used when installed (apt-get install -y rpm).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
OUT=$TARGET_DIR/packages
UNIT=sysflow-processor.service
ENV_FILE=/etc/sysflow/conf/sysflow-processor.env
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

PASSED=0
fail() { echo "packaging check FAILED: $*" >&2; echo "packaging: $PASSED passed, 1 failed"; exit 1; }
ok() { PASSED=$((PASSED + 1)); echo "ok: $*"; }
same() { # <what> <expected file> <actual file>
    if ! diff -u "$2" "$3" >"$WORK/diff"; then
        cat "$WORK/diff" >&2
        fail "$1 differs from the asset list (- expected, + found)"
    fi
    ok "$1 ($(wc -l <"$2") entries)"
}
one() { # <glob>: the single file matching it
    local matches=($1)
    [ ${#matches[@]} -eq 1 ] && [ -f "${matches[0]}" ] || fail "expected exactly one $1, found: ${matches[*]}"
    echo "${matches[0]}"
}

start=$SECONDS
bash packaging/build.sh

python3 packaging/assets.py list | cut -f2 | sort >"$WORK/expected"
grep '^/etc/' "$WORK/expected" >"$WORK/expected-conf"
# cargo-deb adds the Debian copyright file every package must have.
(cat "$WORK/expected"; echo /usr/share/doc/sfprocessor/copyright) | sort >"$WORK/expected-deb"

deb=$(one "$OUT/*.deb")
dpkg-deb -c "$deb" | awk '$1 !~ /^d/ {print $6}' | sed 's#^\./#/#' | sort >"$WORK/deb-files"
same ".deb file list" "$WORK/expected-deb" "$WORK/deb-files"
dpkg-deb -I "$deb" conffiles | sort >"$WORK/deb-conf"
same ".deb conffiles" "$WORK/expected-conf" "$WORK/deb-conf"
# Listed once into a file: `dpkg-deb -c | grep -q` fails under pipefail when grep exits first.
dpkg-deb -c "$deb" >"$WORK/deb-listing"
for bin in sfprocessor sfreplay; do
    grep -q "^-rwxr-xr-x .* \./usr/bin/$bin\$" "$WORK/deb-listing" || fail "/usr/bin/$bin is not mode 755 in the .deb"
done
for script in postinst prerm postrm; do
    dpkg-deb -I "$deb" "$script" >"$WORK/$script" || fail ".deb has no $script"
    sh -n "$WORK/$script" || fail ".deb $script is not valid sh"
done
grep -q 'deb-systemd-helper\|systemctl' "$WORK/postinst" || fail ".deb postinst does not tell systemd about the unit"

tgz=$(one "$OUT/*.tar.gz")
tar -tzvf "$tgz" | awk '$1 !~ /^d/ {print $6}' | sed 's#^\./#/#' | sort >"$WORK/tgz-files"
same ".tar.gz file list" "$WORK/expected" "$WORK/tgz-files"

rpm_file=$(one "$OUT/*.rpm")
if command -v rpm >/dev/null; then
    rpm -qlp "$rpm_file" 2>/dev/null | sort >"$WORK/rpm-files"
    same ".rpm file list" "$WORK/expected" "$WORK/rpm-files"
    rpm -qcp "$rpm_file" 2>/dev/null | sort >"$WORK/rpm-conf"
    same ".rpm config files" "$WORK/expected-conf" "$WORK/rpm-conf"
    # %config(noreplace) shows as flags "cn".
    rpm -qp --queryformat '[%{FILEFLAGS:fflags}\t%{FILENAMES}\n]' "$rpm_file" 2>/dev/null \
        | awk -F'\t' '$1 ~ /c/ && $1 ~ /n/ {print $2}' | sort >"$WORK/rpm-noreplace"
    same ".rpm %config(noreplace) files" "$WORK/expected-conf" "$WORK/rpm-noreplace"
    for script in packaging/rpm/*.sh; do sh -n "$script" || fail "$script is not valid sh"; done
    rpm -qp --scripts "$rpm_file" 2>/dev/null >"$WORK/rpm-scripts"
    grep -q 'if \[ -d /run/systemd/system \]' "$WORK/rpm-scripts" || fail ".rpm scriptlets do not guard systemctl"
else
    echo "warning: rpm is not installed (apt-get install -y rpm): the .rpm's contents were not checked" >&2
    [ "${CI:-}" = "true" ] && fail "CI needs rpm to check the .rpm"
fi

echo "== install the .deb (no systemd running: $( [ -d /run/systemd/system ] && echo no || echo yes ))"
if dpkg-query -W -f='${Status}' sfprocessor 2>/dev/null | grep -q 'installed'; then
    fail "sfprocessor is already installed on this machine; remove it first (dpkg --purge sfprocessor)"
fi
purge() { dpkg --purge sfprocessor >/dev/null 2>&1 || true; }
trap 'purge; rm -rf "$WORK"' EXIT
dpkg -i "$deb"
/usr/bin/sfprocessor -version
systemd-analyze verify --man=no "/usr/lib/systemd/system/$UNIT" || fail "systemd-analyze verify rejects $UNIT"
ok "systemd-analyze verify $UNIT"
grep -q '^ExecReload=/bin/kill -HUP \$MAINPID$' "/usr/lib/systemd/system/$UNIT" || fail "$UNIT has no ExecReload sending SIGHUP"
ok "$UNIT reloads with SIGHUP"
# -test must leave the service's output alone (upstream's emptied it).
mkdir -p /var/log/sysflow
echo '{"alert":"written before -test"}' >/var/log/sysflow/alerts.json
/usr/bin/sfprocessor -test -config /etc/sysflow/pipelines/pipeline.distribution.json \
    || fail "the installed pipeline.distribution.json does not load"
ok "sfprocessor -test -config /etc/sysflow/pipelines/pipeline.distribution.json"
grep -q 'written before -test' /var/log/sysflow/alerts.json || fail "sfprocessor -test emptied /var/log/sysflow/alerts.json"
ok "sfprocessor -test left /var/log/sysflow/alerts.json untouched"
# The installed replay tool against the installed processor: a generated trace through a socket.
replay_sock=$WORK/replay/sysflow.sock
python3 - "$WORK/replay.json" <<'PY'
import json, sys
json.dump({"pipeline": [
    {"processor": "sysflowreader", "handler": "flattener", "in": "sysflow sysflowchan", "out": "flat flattenerchan"},
    {"processor": "exporter", "in": "flat flattenerchan", "export": "null", "format": "json"}]}, open(sys.argv[1], "w"))
PY
/usr/bin/sfprocessor -config "$WORK/replay.json" -driver socket "$replay_sock" >"$WORK/replay.log" 2>&1 &
replay_pid=$!
for _ in $(seq 100); do [ -S "$replay_sock" ] && break; sleep 0.1; done
/usr/bin/sfreplay --socket "$replay_sock" config/demo.sf 2>"$WORK/replay.err" || { cat "$WORK/replay.err" >&2; kill "$replay_pid"; fail "sfreplay could not replay config/demo.sf"; }
kill -TERM "$replay_pid"; wait "$replay_pid" || fail "sfprocessor -driver socket exited non-zero after the replay: $(cat "$WORK/replay.log")"
grep -q 'sent 3000 records' "$WORK/replay.err" || fail "sfreplay did not send config/demo.sf's 3000 records: $(cat "$WORK/replay.err")"
grep -q 'records in 3000,' "$WORK/replay.log" || fail "the processor did not read the 3000 replayed records: $(cat "$WORK/replay.log")"
ok "/usr/bin/sfreplay sent config/demo.sf to /usr/bin/sfprocessor -driver socket (3000 records)"
[ -d /usr/local/sysflow/resources/drivers ] && [ -d /usr/local/sysflow/resources/plugins ] || fail "plugin directories missing"
[ -d /var/log/sysflow ] && [ -d /sock ] || fail "postinst did not create /var/log/sysflow and /sock"

echo "== upgrade over an edited conffile"
echo "LOG_LEVEL=warn # edited by packaging/check.sh" >>"$ENV_FILE"
version=$(dpkg-deb -f "$deb" Version)
mkdir -p "$WORK/next"
cargo deb -p sfprocessor --no-build --strip --deb-version "$version.1" --output "$WORK/next/" >/dev/null
dpkg -i "$WORK/next/"*.deb
[ "$(dpkg-query -W -f='${Version}' sfprocessor)" = "$version.1" ] || fail "the upgrade was not installed"
grep -q 'edited by packaging/check.sh' "$ENV_FILE" || fail "the upgrade replaced the operator's $ENV_FILE"
ok "the upgrade kept the edited $ENV_FILE"

echo "== purge"
dpkg --purge sfprocessor
for gone in /usr/bin/sfprocessor /usr/bin/sfreplay "$ENV_FILE" "/usr/lib/systemd/system/$UNIT" /var/log/sysflow; do
    [ ! -e "$gone" ] || fail "$gone is still there after dpkg --purge"
done
ok "dpkg --purge removed the files, the configuration and the logs"
echo "packaging check took $((SECONDS - start)) s"
echo "packaging: $PASSED passed, 0 failed"
