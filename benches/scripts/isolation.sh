#!/usr/bin/env bash
# Reads first, with a lean lookup client (issue 15, goal 1): how FindContent keeps its
# rate and p99 while 1000-post Updates run, and what the writers keep of their rate.
#
#   benches/scripts/isolation.sh [ROUNDS] [NAME=BINARY[:FLAGS]...]
#
# Each ei-server variant (default: this checkout's release build at write_nice 19, the
# server's default, and at 0) runs as its own process on a copy of one index of POSTS posts pre-loaded by
# ei-load. Lookups come from wrk (C, 2 threads, 16 connections, benches/scripts/find.lua,
# ROWS rows), so the load client's own CPU is small; the writers are ei-load clients
# sending 1000-post Updates that change posts of the same residents, as fast as they
# can. Phases of SECS seconds: Updates by 1 client alone; FindContent alone; FindContent
# while 1 and while 4 Update clients run. FLAGS are extra ei-server flags,
# comma-separated (e.g. `--write-nice,10`); variants alternate ROUNDS times.
#
# Output: a line per variant and round with the ratios the goal is stated in (mixed
# over alone, in the same server run): lookups' req/s and p99 beside 1 writer, the
# writer's posts/s over its solo rate, lookups' p99 beside 4 writers.
# Environment: POSTS (1000000), SECS (10), ROWS (10), FILL (0, see lookup-cpu.sh),
# WRITER_NICE (0: the nice value of the Update client, whose building of 1000-post
# bodies competes for this machine's cores as a remote producer's would not),
# SERVER_RUST_LOG, EI_BENCH_DIR (parent of the work dir, /tmp).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS="${1:-2}"
shift || true
POSTS="${POSTS:-1000000}" SECS="${SECS:-10}" ROWS="${ROWS:-10}" FILL="${FILL:-0}"
WRITER_NICE="${WRITER_NICE:-0}"
bench=isolation
source benches/scripts/lib.sh
need_wrk
bench_setup
VARIANTS=("$@")
[ ${#VARIANTS[@]} -gt 0 ] || VARIANTS=("nice19=$bin/ei-server:--write-nice,19" "nice0=$bin/ei-server:--write-nice,0")
writers=""
cleanup() {
  [ -n "$writers" ] && kill "$writers" 2>/dev/null || true
  if [ -n "$server_pid" ]; then kill -TERM "$server_pid" 2>/dev/null && wait "$server_pid" || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# update_run CLIENTS SECONDS: 1000-post changed Updates; prints posts/s.
update_run() {
  nice -n "$WRITER_NICE" "$bin/ei-load" --url "http://$listen" --preload 0 --preloaded "$POSTS" --update-kind changed \
    --update-clients "$1" --single-clients 0 --find-clients 0 --mixed-find-clients 0 \
    --verify count --secs "$2" --json >"$work/update.json"
  python3 -c 'import json, sys
rows = json.load(open(sys.argv[1]))["rows"]
bad = [r for r in rows if r["errors"]]
if bad:
    sys.exit(f"isolation.sh: Update errors: {bad[0]}")
print(rows[-1]["posts_per_s"])' "$work/update.json"
}

# beside CLIENTS: FindContent while CLIENTS Update clients run; prints
# "REQ_PER_S P99 WRITER_POSTS_PER_S".
beside() {
  update_run "$1" $((SECS + 3)) >"$work/beside" &
  writers=$!
  sleep 1.5
  local find
  find=$(wrk_find "$SECS")
  wait "$writers"
  writers=""
  echo "$find $(cat "$work/beside")"
}

ms() { # wrk's latency (e.g. 1.23ms, 812.00us, 1.02s) in ms
  awk -v v="$1" 'BEGIN {
    if (v ~ /us$/) { sub(/us$/, "", v); print v / 1000 }
    else if (v ~ /ms$/) { sub(/ms$/, "", v); print v + 0 }
    else { sub(/s$/, "", v); print v * 1000 } }'
}

say "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
say "pre-loading $POSTS posts (FILL: $FILL under them)"
make_template
printf '| variant | round | FindContent alone: req/s, p99 ms | 1 writer: req/s ×, p99 × | writer posts/s × solo (solo) | 4 writers: req/s ×, p99 × |\n'
printf '|---|---:|---|---|---|---|\n'
for round in $(seq 1 "$ROUNDS"); do
  for v in "${VARIANTS[@]}"; do
    start_variant "$v"
    say "round $round: $name, load average $(cut -d' ' -f1-3 /proc/loadavg)"
    solo=$(update_run 1 "$SECS")
    wrk_find 3 >/dev/null
    read -r rate p99 <<<"$(wrk_find "$SECS")"
    read -r rate1 p991 posts1 <<<"$(beside 1)"
    read -r rate4 p994 _ <<<"$(beside 4)"
    stop_server
    awk -v n="$name" -v round="$round" -v r="$rate" -v p="$(ms "$p99")" -v solo="$solo" \
      -v r1="$rate1" -v p1="$(ms "$p991")" -v w1="$posts1" -v r4="$rate4" -v p4="$(ms "$p994")" 'BEGIN {
      printf "| %s | %d | %.0f, %.2f | %.2f×, %.2f× | %.2f× (%.0f) | %.2f×, %.2f× |\n",
        n, round, r, p, r1 / r, p1 / p, w1 / solo, solo, r4 / r, p4 / p }'
  done
done
