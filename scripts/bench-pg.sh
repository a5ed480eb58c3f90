#!/usr/bin/env bash
# The PostgreSQL benchmark: ei-server on the PostgreSQL store against the platform's
# one-table design (pg_baseline.py, database work only), on the same PostgreSQL
# server in the same run. One command; a Markdown report on stdout, progress on
# stderr, raw JSON kept in the work dir with --keep.
#
#   scripts/bench-pg.sh [--posts N] [--secs S] [--requests R] [--keep]
#
#   --posts N     index size, both sides (default 1000000)
#   --secs S      seconds per timed phase (default 20)
#   --requests R  the peer's 1000-post requests per Update run (default 300)
#   --keep        keep the work dir (data, logs, JSON); default: removed at the end
#
# Both sides: 1000-post Updates changing mostRecentContent of indexed posts by 1 and
# 4 clients; FindContent returning 10 posts by 16 clients, alone and while one client
# sends such Updates; bytes per post on disk after the index was written through
# Updates (pg_total_relation_size of every table of each side's database).
# Ours end to end: SOAP over HTTP on loopback (ei-load --url), the release binary
# ei-server --store postgresql://... The peer: pg_baseline.py (psycopg, pgbench),
# which starts the PostgreSQL server (its settings: shared_buffers 4GB, ...) and
# which ei-server then shares.
#
# Environment: PG_BASELINE (default ../shared/tools/pg_baseline.py next to the
# repository), EI_BENCH_VENV (a venv for psycopg, default ~/.cache/ei-bench-venv,
# created when missing), EI_BENCH_DIR (parent of the work dir, default /tmp).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

posts=1000000
secs=20
requests=300
keep=false
while [ $# -gt 0 ]; do
  case "$1" in
    --posts) posts=$2; shift 2 ;;
    --secs) secs=$2; shift 2 ;;
    --requests) requests=$2; shift 2 ;;
    --keep) keep=true; shift ;;
    -h | --help) sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench-pg.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

bench=bench-pg
source benches/scripts/lib.sh

baseline=${PG_BASELINE:-$repo/../shared/tools/pg_baseline.py}
[ -f "$baseline" ] || { echo "bench-pg.sh: no $baseline (set PG_BASELINE)" >&2; exit 2; }
py=$(bench_python)
bench_setup
port=55432
peer=("$py" "$baseline" --workdir "$work/pg" --port "$port" --rows "$posts" --requests "$requests" --quiet-wait 10)
cleanup() {
  if [ -n "$server_pid" ]; then kill -TERM "$server_pid" 2>/dev/null && wait "$server_pid" || true; fi
  "${peer[@]}" stop >/dev/null 2>&1 || true
  if $keep; then say "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

psql_ei() { "$(scripts/pg.sh bindir)/psql" -X -q -tA -h "$work/pg/sock" -p "$port" -U postgres "$@"; }
# Bytes of every table (with its indexes and TOAST) of a database, over its rows of posts.
db_bytes() {
  psql_ei -d "$1" -c "select coalesce(sum(pg_total_relation_size(c.oid)), 0) from pg_class c
    join pg_namespace n on n.oid = c.relnamespace
    where c.relkind in ('r', 'p', 'm') and n.nspname not in ('pg_catalog', 'information_schema')
      and n.nspname not like 'pg_toast%'"
}

say "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
"${peer[@]}" start
say "peer: loading $posts posts"
"${peer[@]}" load

say "peer: Updates, FindContent"
"${peer[@]}" update --table pre --mode resend --clients 1 >"$work/peer-update-1.json"
"${peer[@]}" update --table pre --mode resend --clients 4 >"$work/peer-update-4.json"
"${peer[@]}" find --clients 16 --duration "$secs" >"$work/peer-find.json"
"${peer[@]}" find --clients 16 --duration "$secs" --with-updates >"$work/peer-find-mixed.json"
say "peer: sizes (writes the index through its Update path)"
"${peer[@]}" size >"$work/peer-size.json"
psql_ei -d postgres -c "drop database if exists ei_run" -c "checkpoint"

say "ours: ei-server --store postgresql://...ei_bench"
psql_ei -d postgres -c "drop database if exists ei_bench" -c "create database ei_bench"
listen_port=$("$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p "$work/ei"
"$bin/ei-server" --listen "127.0.0.1:$listen_port" --data-dir "$work/ei" --hsa-id 5565594230 \
  --admin-listen 127.0.0.1:0 --log-format text \
  --store "postgresql://postgres@/ei_bench?host=$work/pg/sock&port=$port" \
  >"$work/ei-server.log" 2>&1 &
server_pid=$!
load=("$bin/ei-load" --url "http://127.0.0.1:$listen_port" --server-pid "$server_pid" --json)
# 1. The index written through Updates (new residents, 4 clients): its size.
say "ours: loading $posts posts through Updates"
"${load[@]}" --preload "$posts" --update-clients 0 --single-clients 0 --find-clients 0 \
  --mixed-find-clients 0 >"$work/ours-load.json"
psql_ei -d ei_bench -c "vacuum analyze" -c "checkpoint"
our_bytes=$(db_bytes ei_bench)
# 2. The timed phases on that index.
say "ours: Updates, FindContent"
"${load[@]}" --preload 0 --preloaded "$posts" --update-kind changed --update-clients 1,4 --single-clients 0 \
  --find-clients 16 --find-rows 10 --mixed-find-clients 16 --mixed-update-clients 1 \
  --secs "$secs" >"$work/ours.json"
kill -TERM "$server_pid" && wait "$server_pid" || true
server_pid=""

"$py" - "$work" "$our_bytes" "$posts" <<'EOF'
import json, os, sys
work, our_bytes, posts = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
j = lambda n: json.load(open(os.path.join(work, n)))
ours = j("ours.json")
rows = {(r["phase"], r["clients"]): r for r in ours["rows"]}
def row(prefix, clients):
    for (name, c), r in rows.items():
        if name.startswith(prefix) and c == clients:
            return r
    raise SystemExit(f"no ei-load row {prefix!r} with {clients} clients in {list(rows)}")
def rate(r, key):
    if r["errors"]:
        raise SystemExit(f"ei-load phase {r['phase']}: {r['errors']} failed requests: {r['first_error']}")
    return r[key]
u1, u4 = j("peer-update-1.json")[0], j("peer-update-4.json")[0]
f, fm = j("peer-find.json")[0], j("peer-find-mixed.json")[0]
size = j("peer-size.json")["grown_by_updates"]
peer_bpp = size["bytes_per_row"]["total"]
loaded = j("ours-load.json")
our_posts = loaded.get("index_posts") or posts
our_bpp = our_bytes / our_posts
lines = [
    ("1000-post Updates (changed), 1 client, posts/s", rate(row("update 1000 (changed)", 1), "posts_per_s"), u1["posts_per_s"], 1.3),
    ("1000-post Updates (changed), 4 clients, posts/s", rate(row("update 1000 (changed)", 4), "posts_per_s"), u4["posts_per_s"], 1.3),
    ("FindContent 10 posts, 16 clients, req/s", rate(row("find 10 rows", 16), "requests_per_s"), f["req_per_s"], 1.0),
    ("FindContent 16 clients during Updates, req/s", rate(row("find 10 rows, during", 16), "requests_per_s"), fm["req_per_s"], 1.0),
    ("Updates during FindContent (1 client), posts/s", rate(row("update 1000 (changed), during", 1), "posts_per_s"), fm["update_posts_per_s"], None),
]
print(f"| {posts} posts | ours (HTTP + SOAP) | peer (SQL only) | ours / peer | goal |")
print("|---|---:|---:|---:|---|")
for name, o, p, goal in lines:
    ratio = o / p if p else float("nan")
    verdict = "" if goal is None else (f"≥ {goal}: " + ("met" if ratio >= goal else "not met"))
    print(f"| {name} | {o:,.0f} | {p:,.0f} | {ratio:.2f} | {verdict} |")
print(f"| bytes per post on disk (written by Updates) | {our_bpp:,.0f} | {peer_bpp:,.0f} | {our_bpp / peer_bpp:.2f} | below the peer: "
      + ("met" if our_bpp < peer_bpp else "not met") + " |")
print()
print(f"ours: pre-load through Updates (4 clients) {rate(loaded['rows'][0], 'posts_per_s'):,.0f} posts/s; "
      f"peer's index grown by Updates: {size['fill_posts_per_s']:,} posts/s (1 client, SQL)")
EOF
say "done; machine load average now $(cut -d' ' -f1-3 /proc/loadavg)"
