#!/usr/bin/env bash
# Import and restore at scale: generates N posts (default 10 M) as the Java index's
# MySQL export with ei-gen, imports them with `ei-server import` (timed), serves the
# index, backs it up with POST /admin/backup, stops, and restores the backup with
# `ei-server restore` (timed); then checks the restored count.
# usage: benches/scripts/import-restore.sh [POSTS] [WORKDIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/env.sh
cargo build --release -q -p ei-server -p ei-benches --bins
BIN="$CARGO_TARGET_DIR/release"
POSTS="${1:-10000000}"
WORK="${2:-$(mktemp -d)}"
mkdir -p "$WORK"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
echo "generating $POSTS posts into $WORK/engagement_index_table.txt"
"$BIN/ei-gen" --posts "$POSTS" > "$WORK/engagement_index_table.txt"
ls -l "$WORK/engagement_index_table.txt"
sync
echo "### import"
/usr/bin/time -f "import: %e s wall, %U s user, %S s sys, %M KiB peak RSS" \
  "$BIN/ei-server" import --data-dir "$WORK/data" "$WORK/engagement_index_table.txt"
du -sh "$WORK/data"
RUST_LOG=warn "$BIN/ei-server" --listen 127.0.0.1:18380 --admin-listen 127.0.0.1:18381 \
  --data-dir "$WORK/data" --hsa-id 5565594230 &
pid=$!
until curl -sf http://127.0.0.1:18380/ready >/dev/null; do sleep 0.2; done
echo "### backup"
curl -sf -X POST "http://127.0.0.1:18381/admin/backup?to=$WORK/backup"; echo
kill -TERM "$pid"; wait "$pid"
sync
echo "### restore"
/usr/bin/time -f "restore: %e s wall, %U s user, %S s sys, %M KiB peak RSS" \
  "$BIN/ei-server" restore --from "$WORK/backup" --data-dir "$WORK/restored"
du -sh "$WORK/restored"
