#!/usr/bin/env bash
# One index size measured end to end: ei-fill writes POSTS varied posts (SST files
# ingested whole, then the statistics counted at the first open), ei-server starts
# on the directory (start-up time: exec until /ready), ei-load pre-loads 1 M posts of
# its own data on top through HTTP and runs the Update and FindContent phases; then
# the disk bytes per post and the server's peak RSS. The directory is deleted at the
# end (100 M posts take about 6 GB).
# usage: benches/scripts/scale.sh POSTS [WORKDIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/env.sh
BIN="$CARGO_TARGET_DIR/release"
[ -x "$BIN/ei-fill" ] || cargo build --release -q -p ei-server -p ei-benches --bins
POSTS="${1:?usage: scale.sh POSTS [WORKDIR]}"
WORK="${2:-$(mktemp -d)}"
mkdir -p "$WORK"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK/data"' EXIT
echo "### $POSTS posts, $(date -u +%H:%M:%S) UTC, load $(cut -d' ' -f1-3 /proc/loadavg)"
/usr/bin/time -f "fill: %e s wall, %U s user, %S s sys, %M KiB peak RSS" \
  "$BIN/ei-fill" --data-dir "$WORK/data" --posts "$POSTS"
echo "data dir after fill: $(du -sb "$WORK/data" | cut -f1) bytes"
t0=$(date +%s.%N)
RUST_LOG=warn "$BIN/ei-server" --listen 127.0.0.1:18680 --admin-listen 127.0.0.1:18681 \
  --data-dir "$WORK/data" --hsa-id 5565594230 &
pid=$!
until curl -sf http://127.0.0.1:18680/ready >/dev/null; do sleep 0.05; done
echo "start-up (exec until /ready): $(echo "$(date +%s.%N) - $t0" | bc) s"
"$BIN/ei-load" --url http://127.0.0.1:18680 --server-pid "$pid" --preload 1000000 \
  --update-clients 1,4 --single-clients 0 --find-clients 16 --find-rows 10 \
  --mixed-find-clients 16 --mixed-update-clients 1 --verify count --secs "${SECS:-10}"
posts=$(curl -sf http://127.0.0.1:18680/status | sed -n 's/.*"engagements":\([0-9]*\).*/\1/p')
kill -TERM "$pid"; wait "$pid" || true
bytes=$(du -sb "$WORK/data" | cut -f1)
echo "after stop: $posts posts, $bytes bytes, $(echo "scale=1; $bytes / $posts" | bc) bytes/post"
