#!/usr/bin/env bash
# Reads first, A/B in one run: for each server variant, starts ei-server as its own
# process on a fresh temp data dir, runs the same ei-load plan against it (pre-load,
# 1000-post Updates by 1 and 4 clients, FindContent by 16 clients alone, then the
# 16 FindContent clients beside 1 and beside 4 Update clients), and prints ei-load's
# table with its isolation ratios; the variants alternate ROUNDS times.
#
# usage: benches/scripts/reads-first.sh [ROUNDS] [VARIANT...]
#   VARIANT = NAME=BINARY[:WRITE_NICE]   (default: nice10=<built>:10 nice0=<built>:0)
# env: POSTS (default 1000000), SECS (10), ROWS (10), EI_LOAD_ARGS (extra ei-load flags)
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/env.sh
BIN="$CARGO_TARGET_DIR/release"
[ -x "$BIN/ei-load" ] || cargo build --release -q -p ei-server -p ei-benches --bins
ROUNDS="${1:-1}"
shift || true
VARIANTS=("$@")
[ ${#VARIANTS[@]} -gt 0 ] || VARIANTS=("nice10=$BIN/ei-server:10" "nice0=$BIN/ei-server:0")
POSTS="${POSTS:-1000000}" SECS="${SECS:-10}" ROWS="${ROWS:-10}"
WORK="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
for round in $(seq 1 "$ROUNDS"); do
  for v in "${VARIANTS[@]}"; do
    name="${v%%=*}" spec="${v#*=}"
    bin="${spec%%:*}" nice=""
    [ "$spec" != "$bin" ] && nice="${spec#*:}"
    flags=()
    [ -n "$nice" ] && flags=(--write-nice "$nice")
    rm -rf "$WORK/data"
    RUST_LOG=warn "$bin" --listen 127.0.0.1:18480 --admin-listen 127.0.0.1:18481 \
      --data-dir "$WORK/data" --hsa-id 5565594230 "${flags[@]}" &
    pid=$!
    until curl -sf http://127.0.0.1:18480/ready >/dev/null; do sleep 0.2; done
    echo "### round $round, $name ($bin ${flags[*]}), $(date -u +%H:%M:%S) UTC, load $(cut -d' ' -f1-3 /proc/loadavg)"
    "$BIN/ei-load" --url http://127.0.0.1:18480 --server-pid "$pid" --preload "$POSTS" \
      --update-clients 1,4 --single-clients 0 --find-clients 16 --find-rows "$ROWS" \
      --mixed-find-clients 16 --mixed-update-clients 1,4 --verify count --secs "$SECS" \
      ${EI_LOAD_ARGS:-}
    kill -TERM "$pid"; wait "$pid" || true
  done
done
