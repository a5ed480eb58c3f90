#!/usr/bin/env bash
# What the notification outbox costs: 1000-post Update throughput (4 clients, changed
# mostRecentContent on a pre-loaded index) with 0, 1 and 10 subscribers, same command,
# same run. The subscribers are ProcessNotification endpoints of a second ei-server
# (the "sink", WAL sync off) on loopback, with the default delivery settings; the
# last case, "10-down", has 10 subscribers whose port is closed, so deliveries fail
# and back off: what remains is the outbox write itself.
# usage: benches/scripts/notify-cost.sh [PRELOAD] [SECS]
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/env.sh
cargo build --release -q -p ei-server -p ei-benches --bins
BIN="$CARGO_TARGET_DIR/release"
PRELOAD="${1:-200000}"
SECS="${2:-10}"
WORK="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
RUST_LOG=warn "$BIN/ei-server" --listen 127.0.0.1:18181 --data-dir "$WORK/sink" --hsa-id sink-hsa --wal-sync false --admin-listen 127.0.0.1:0 &
sleep 1
for n in 0 1 10 10-down; do
  cfg="$WORK/ei-$n.toml"
  port=18181
  if [ "$n" = 10-down ]; then port=18199; fi
  printf '[notifications]\nadmin_listen = "127.0.0.1:0"\n' > "$cfg"
  for i in $(seq 1 "${n%-down}"); do
    printf '[[notifications.subscribers]]\nlogical_address = "SE-SUB-%s"\nurl = "http://127.0.0.1:%s/skltp-ei/notification-service/v1"\n' "$i" "$port" >> "$cfg"
  done
  RUST_LOG=warn "$BIN/ei-server" --listen 127.0.0.1:18080 --data-dir "$WORK/ei-$n" --hsa-id 5565594230 --config "$cfg" &
  pid=$!
  sleep 1
  echo "### $n subscribers"
  "$BIN/ei-load" --url http://127.0.0.1:18080 --server-pid "$pid" --preload "$PRELOAD" \
    --update-clients 4 --single-clients 0 --find-clients 0 --mixed-find-clients 0 --secs "$SECS" --compact false
  curl -s http://127.0.0.1:18080/metrics | grep -E '^ei_notify_(pending|delivered_total)' | sort | head -4 || true
  kill -TERM "$pid"; wait "$pid" || true
done
