#!/usr/bin/env bash
# Checks ops/ against the built server: `promtool check rules` and `promtool test
# rules` on the alert rules, `promtool check metrics` on a live /metrics of the
# built ei-server (started on a free loopback port with a temp data dir and one
# subscriber, so every family is present), and that every metric the Grafana
# dashboard and the alert rules use is one the server exports.
#
# promtool comes from Debian's `prometheus` package: downloaded with apt-get and
# extracted (no service is installed or started), cached in ~/.cache/ei-tools.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

tools="${EI_TOOLS_DIR:-$HOME/.cache/ei-tools}"
promtool="$tools/promtool"
if [ ! -x "$promtool" ]; then
  echo "check-ops: extracting promtool from Debian's prometheus package" >&2
  tmp=$(mktemp -d)
  (cd "$tmp" && apt-get download prometheus >/dev/null 2>&1) || {
    SUDO=""; if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    (cd "$tmp" && apt-get download prometheus >/dev/null)
  }
  dpkg-deb -x "$tmp"/prometheus_*.deb "$tmp/root"
  mkdir -p "$tools"
  install -m 755 "$tmp/root/usr/bin/promtool" "$promtool"
  rm -rf "$tmp"
fi
"$promtool" --version 2>&1 | head -1 >&2

"$promtool" check rules ops/prometheus/ei-alerts.yml
(cd ops/prometheus && "$promtool" test rules ei-alerts.test.yml)

server="$CARGO_TARGET_DIR/debug/ei-server"
[ -x "$server" ] || cargo build -p ei-server
work=$(mktemp -d)
cat >"$work/ei.toml" <<TOML
data_dir = "$work/data"
listen = "127.0.0.1:0"
hsa_id = "5565594230"
[notifications]
admin_listen = "127.0.0.1:0"
retry_delay_ms = 60000
[[notifications.subscribers]]
logical_address = "SE-CHECK"
url = "http://127.0.0.1:1/pn"
TOML
RUST_LOG=info NO_COLOR=1 "$server" --config "$work/ei.toml" 2>"$work/log" &
pid=$!
stop() { kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$work"; }
trap stop EXIT
addr=""
for _ in $(seq 1 600); do
  addr=$(sed -n 's/.*ei-server listening.* addr=\([0-9.:]*\).*/\1/p' "$work/log" | head -1)
  [ -n "$addr" ] && break
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
[ -n "$addr" ] || { cat "$work/log" >&2; echo "check-ops: the server did not start" >&2; exit 1; }
# One Update, so the request and write families have samples too.
sed 's/\${citizenId[0-9]}/191212121212/' tests/samples/Update_1_OK.xml |
  curl -fsS -o /dev/null "http://$addr/skltp-ei/update-service/v1" \
    -H 'x-skltp-correlation-id: check-ops' -H 'content-type: text/xml; charset=UTF-8' --data-binary @-
curl -fsS "http://$addr/metrics" >"$work/metrics"
"$promtool" check metrics <"$work/metrics"
echo "check-ops: promtool check metrics: $(grep -c '^# TYPE' "$work/metrics") families, no problems" >&2

# Every metric name the dashboard and the rules use is exported.
missing=0
for name in $(grep -ohE '\b(ei|process)_[a-z_]+' ops/grafana/ei-dashboard.json ops/prometheus/ei-alerts.yml | sort -u); do
  family=$(echo "$name" | sed -E 's/_(bucket|sum|count)$//')
  if ! grep -q "^# TYPE $family " "$work/metrics"; then
    echo "check-ops: $name is used in ops/ but not exported" >&2
    missing=1
  fi
done
[ "$missing" = 0 ] || exit 1
echo "check-ops: every metric used by the dashboard and the alerts is exported" >&2
kill -TERM "$pid"
wait "$pid" || { echo "check-ops: the server did not exit cleanly" >&2; exit 1; }
trap - EXIT
rm -rf "$work"
echo "check-ops: ok" >&2
