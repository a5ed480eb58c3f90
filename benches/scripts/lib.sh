# Shared by the benchmark scripts that run ei-server as its own process against an
# index pre-loaded by ei-load (lookup-cpu.sh, isolation.sh), and by
# scripts/bench-pg.sh for its Python. Source it from the repository root and set
# `bench` (the script's name, for messages); [`bench_setup`] then builds the release
# binaries and makes the work dir. The server functions expect `work`, `bin`, POSTS,
# ROWS and FILL, and set `server_pid`.

say() { echo "[$(date -u +%H:%M:%S)] $bench: $*" >&2; }

# need_wrk: stops with a message unless wrk is installed.
need_wrk() {
  command -v wrk >/dev/null || { echo "$bench: needs wrk (Debian package wrk)" >&2; exit 2; }
}

# bench_setup: the machine set up (scripts/setup.sh), the release ei-server,
# ei-load and ei-fill built; sets `bin` and `work` (a new dir under EI_BENCH_DIR,
# default /tmp, readable by PostgreSQL's user).
bench_setup() {
  scripts/setup.sh
  source scripts/env.sh
  bin="$CARGO_TARGET_DIR/release"
  say "building ei-server and ei-load (release)"
  cargo build --release --quiet -p ei-server -p ei-benches --bins
  work=$(mktemp -d "${EI_BENCH_DIR:-/tmp}/ei-$bench.XXXXXX")
  chmod 755 "$work"
}

# bench_python: the Python of a venv with psycopg (EI_BENCH_VENV, default
# ~/.cache/ei-bench-venv), created when missing; prints its path.
bench_python() {
  local venv=${EI_BENCH_VENV:-$HOME/.cache/ei-bench-venv}
  if ! "$venv/bin/python" -c 'import psycopg' >/dev/null 2>&1; then
    say "creating $venv with psycopg"
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install --quiet "psycopg[binary]" >&2
  fi
  echo "$venv/bin/python"
}

listen=127.0.0.1:18590
server_pid=""
ticks=$(getconf CLK_TCK)

# CPU ticks (user + system) of one process.
proc_ticks() { awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }

# start_server BINARY DATA_DIR [FLAG...]: starts it on $listen and waits for /ready.
# The log level is the server's default (info) unless SERVER_RUST_LOG says otherwise.
start_server() {
  local b=$1 d=$2
  shift 2
  RUST_LOG="${SERVER_RUST_LOG:-info}" "$b" --listen "$listen" --admin-listen 127.0.0.1:0 \
    --data-dir "$d" --hsa-id 5565594230 "$@" >>"$work/server.log" 2>&1 &
  server_pid=$!
  until curl -sf "http://$listen/ready" >/dev/null; do
    kill -0 "$server_pid" 2>/dev/null || { tail "$work/server.log" >&2; exit 1; }
    sleep 0.2
  done
}

stop_server() {
  kill -TERM "$server_pid"
  wait "$server_pid" || true
  server_pid=""
}

# The index every variant starts from: FILL varied posts by ei-fill (when FILL > 0),
# then POSTS of ei-load's own (the ones find.lua looks up) through HTTP.
make_template() {
  if [ "${FILL:-0}" -gt 0 ]; then
    "$bin/ei-fill" --data-dir "$work/template" --posts "$FILL" >/dev/null
  fi
  start_server "$bin/ei-server" "$work/template"
  "$bin/ei-load" --url "http://$listen" --preload "$POSTS" --update-clients 0 --single-clients 0 \
    --find-clients 0 --mixed-find-clients 0 --compact false >/dev/null
  stop_server
}

# start_variant NAME=BINARY[:FLAG,FLAG...]: a copy of the template under that server;
# sets `name`.
start_variant() {
  local spec="${1#*=}" b flags=()
  name="${1%%=*}"
  b="${spec%%:*}"
  [ "$spec" != "$b" ] && IFS=, read -r -a flags <<<"${spec#*:}"
  rm -rf "$work/data" && cp -r "$work/template" "$work/data"
  start_server "$b" "$work/data" "${flags[@]}"
}

# wrk_find SECONDS: FindContent by 16 connections (find.lua, ROWS rows); prints
# "REQUESTS_PER_S P99", failing on any reply that is not 200.
wrk_find() {
  local out
  out=$(wrk -t2 -c16 -d"$1s" --latency -s benches/scripts/find.lua "http://$listen" -- "$POSTS" "$ROWS")
  if grep -q 'Non-2xx' <<<"$out"; then
    echo "$out" >&2
    echo "$0: $name answered FindContent with non-200" >&2
    exit 1
  fi
  echo "$(awk '/^Requests\/sec:/ { print $2 }' <<<"$out") $(awk '$1 == "99%" { print $2 }' <<<"$out")"
}
