#!/usr/bin/env bash
# CPU per FindContent, ours against the PostgreSQL peer, in one run (issue 15, goal 2).
#
#   benches/scripts/lookup-cpu.sh [ROUNDS] [NAME=BINARY[:FLAGS]...]
#
# Ours: each ei-server variant (default: this checkout's release build, access log on
# and off) runs as its own process on a copy of one index of POSTS posts pre-loaded by
# ei-load; wrk (C, 2 threads, 16 connections) sends FindContent returning ROWS posts
# for random residents (benches/scripts/find.lua) for SECS seconds after a 3-second
# warm-up; the server's CPU is read from /proc/PID/stat around the timed run. FLAGS
# are extra ei-server flags, comma-separated (e.g. `--audit,false`). The server logs
# at its default level (info) unless SERVER_RUST_LOG says otherwise.
# The peer: the platform's one-table design on PostgreSQL (../shared/tools/pg_baseline.py
# start + load, POSTS posts), its lookups by pgbench with the tool's own FindContent
# script (`-M prepared -c 16 -j 2`, the rows of one resident and domain), the
# PostgreSQL server's CPU as that of every process of its user, reaped backends included
# (the postmaster's cutime and cstime), over the tool's unix socket and again over TCP on
# loopback (as our lookups travel). The variants and the peer alternate ROUNDS times.
#
# Output: one line per measurement (lookups/s, p99 where the client reports it, CPU µs
# per lookup, cores), then a table of medians with each variant's CPU per lookup over
# the peer's. Environment: POSTS (1000000), SECS (10), ROWS (10), FILL (0: posts that
# ei-fill writes into our index first, varied data in the bottom levels under the
# pre-loaded posts the lookups ask for, as in an index that has lived), PG_BASELINE,
# EI_BENCH_VENV (as scripts/bench-pg.sh), EI_BENCH_DIR (parent of the work dir, /tmp).
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$(pwd)
ROUNDS="${1:-3}"
shift || true
POSTS="${POSTS:-1000000}" SECS="${SECS:-10}" ROWS="${ROWS:-10}" FILL="${FILL:-0}"
bench=lookup-cpu
source benches/scripts/lib.sh
need_wrk

baseline=${PG_BASELINE:-$repo/../shared/tools/pg_baseline.py}
[ -f "$baseline" ] || { echo "lookup-cpu.sh: no $baseline (set PG_BASELINE)" >&2; exit 2; }
py=$(bench_python)
bench_setup
VARIANTS=("$@")
[ ${#VARIANTS[@]} -gt 0 ] || VARIANTS=("audit-on=$bin/ei-server" "audit-off=$bin/ei-server:--audit,false")
port=55433
peer=("$py" "$baseline" --workdir "$work/pg" --port "$port" --rows "$POSTS" --quiet-wait 5)
cleanup() {
  if [ -n "$server_pid" ]; then kill -TERM "$server_pid" 2>/dev/null && wait "$server_pid" || true; fi
  "${peer[@]}" stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# CPU ticks of every process of `user`, with the children each has reaped.
user_ticks() {
  local uid total=0 pid t
  uid=$(id -u "$1")
  for pid in $(pgrep -U "$uid"); do
    t=$(awk '{ sub(/.*\) /, ""); print $12 + $13 + $14 + $15 }' "/proc/$pid/stat" 2>/dev/null) || continue
    total=$((total + t))
  done
  echo "$total"
}
results="$work/results.tsv"
: >"$results"
# record NAME LOOKUPS_PER_S P99_MS CPU_TICKS SECONDS
record() {
  awk -v n="$1" -v r="$2" -v p="$3" -v c="$4" -v s="$5" -v hz="$ticks" 'BEGIN {
    us = c / hz / (r * s) * 1e6; printf "%s\t%.0f\t%s\t%.1f\t%.2f\n", n, r, p, us, c / hz / s }' \
    | tee -a "$results" | awk -F'\t' '{ printf "  %-12s %8s lookups/s  p99 %-9s %6s µs CPU per lookup  %s cores\n", $1, $2, $3, $4, $5 }' >&2
}

say "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
say "peer: PostgreSQL with $POSTS posts (pg_baseline.py start, load)"
"${peer[@]}" start
"${peer[@]}" load
# The tool's FindContent: a 1-second run makes its database (ei_run) and its pgbench script.
"${peer[@]}" find --clients 16 --duration 1 >/dev/null
pgbench_run() { # SECONDS HOST
  "$(scripts/pg.sh bindir)/pgbench" -n -M prepared -c 16 -j 2 -T "$1" -f "$work/pg/findcontent.sql" \
    -h "$2" -p "$port" -U postgres ei_run
}
# Waits until pgbench's backends have exited and been reaped (their CPU is then in
# the postmaster's cutime, not lost between a read of their /proc entry and the reap).
pg_settle() {
  for _ in $(seq 50); do
    pgrep -U "$(id -u postgres)" -f 'postgres: .* ei_run' >/dev/null || return 0
    sleep 0.1
  done
  echo "lookup-cpu.sh: pgbench's backends did not end" >&2
  exit 1
}

say "ours: pre-loading $POSTS posts (FILL: $FILL under them)"
make_template

for round in $(seq 1 "$ROUNDS"); do
  say "round $round of $ROUNDS, load average $(cut -d' ' -f1-3 /proc/loadavg)"
  for v in "${VARIANTS[@]}"; do
    start_variant "$v"
    wrk_find 3 >/dev/null
    t0=$(proc_ticks "$server_pid")
    result=$(wrk_find "$SECS")
    read -r rate p99 <<<"$result"
    t1=$(proc_ticks "$server_pid")
    curl -s "http://$listen/metrics" | grep '^ei_find_reads_total' | tr '\n' ' ' >&2 && echo >&2
    stop_server
    record "$name" "$rate" "$p99" $((t1 - t0)) "$SECS"
  done
  # The tool's unix socket, and TCP on loopback as our lookups travel.
  for host in "$work/pg/sock" 127.0.0.1; do
    name=postgresql
    [ "$host" = 127.0.0.1 ] && name=postgresql-tcp
    pgbench_run 3 "$host" >/dev/null
    pg_settle
    t0=$(user_ticks postgres)
    out=$(pgbench_run "$SECS" "$host")
    pg_settle
    t1=$(user_ticks postgres)
    rate=$(awk '/^tps = / { print $3 }' <<<"$out")
    record "$name" "$rate" - $((t1 - t0)) "$SECS"
  done
done

say "medians of $ROUNDS rounds ($POSTS posts, $ROWS rows per lookup, ${SECS}-s runs)"
"$py" - "$results" <<'EOF'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
names = list(dict.fromkeys(r[0] for r in rows))
med = {n: statistics.median(float(r[3]) for r in rows if r[0] == n) for n in names}
rate = {n: statistics.median(float(r[1]) for r in rows if r[0] == n) for n in names}
print("| | lookups/s | CPU per lookup | × PostgreSQL's |")
print("|---|---:|---:|---:|")
for n in names:
    print(f"| {n} | {rate[n]:,.0f} | {med[n]:.1f} µs | {med[n] / med['postgresql']:.2f} |")
EOF
