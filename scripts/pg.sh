#!/usr/bin/env bash
# Throwaway PostgreSQL clusters for tests and benchmarks: initdb in a directory of
# your choice, served on a unix socket in that directory only (no TCP), trust
# authentication for local connections, user `postgres`. As root the server runs as
# user `postgres` (initdb refuses root); as anyone else it runs as you.
#
#   scripts/pg.sh start DIR   initdb DIR/data (unless there), start; prints the libpq URL
#   scripts/pg.sh url DIR     the URL of the cluster in DIR
#   scripts/pg.sh env DIR     `export EI_TEST_PG=<url> EI_PG_BIN=<bin dir>` for eval
#   scripts/pg.sh psql DIR [ARGS...]   psql on it
#   scripts/pg.sh stop DIR    fast shutdown (no error when nothing runs)
#   scripts/pg.sh bindir      the server binaries' directory
#
# The URL is `postgresql://postgres@/postgres?host=DIR` (the unix socket directory as
# `host`, libpq syntax). Extra server settings: PG_SETTINGS="name=value ..." at start.
# Needs the server binaries (Debian: postgresql, which scripts/setup.sh installs);
# EI_PG_BIN overrides where they are looked for.
set -euo pipefail

die() {
  echo "pg.sh: $*" >&2
  exit 2
}

bindir() {
  if [ -n "${EI_PG_BIN:-}" ]; then
    echo "$EI_PG_BIN"
    return
  fi
  local d
  if command -v pg_config >/dev/null 2>&1; then
    d=$(pg_config --bindir 2>/dev/null || true)
    if [ -x "$d/initdb" ]; then
      echo "$d"
      return
    fi
  fi
  # Debian keeps the server binaries out of PATH, one directory per major version.
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k4 -n | tail -1)
  [ -n "$d" ] && [ -x "$d/initdb" ] || die "no PostgreSQL server binaries (Debian: apt-get install postgresql, or set EI_PG_BIN)"
  echo "$d"
}

# Runs a command as the cluster's owner.
as_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

url() {
  echo "postgresql://postgres@/postgres?host=$1"
}

start() {
  local dir bin
  mkdir -p "$1"
  dir=$(cd "$1" && pwd)
  bin=$(bindir)
  # The socket path must fit in sun_path (107 bytes).
  [ ${#dir} -le 90 ] || die "$dir is too long for a unix socket path; use a shorter directory"
  if [ "$(id -u)" -eq 0 ]; then chown postgres: "$dir"; fi
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    as_owner "$bin/initdb" -D "$dir/data" -U postgres --auth=trust --locale=C -E UTF8 >"$dir/initdb.log" 2>&1 ||
      die "initdb failed: $(tail -5 "$dir/initdb.log")"
    {
      echo "# scripts/pg.sh"
      echo "listen_addresses = ''"
      echo "unix_socket_directories = '$dir'"
      # Test binaries run in parallel, each with its own pool.
      echo "max_connections = 300"
      echo "shared_buffers = 256MB"
      for kv in ${PG_SETTINGS:-}; do echo "${kv%%=*} = '${kv#*=}'"; done
    } >>"$dir/data/postgresql.conf"
  fi
  if ! as_owner "$bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null ||
      die "the server did not start: $(tail -5 "$dir/server.log")"
  fi
  url "$dir"
}

stop() {
  local dir
  dir=$(cd "$1" 2>/dev/null && pwd) || return 0
  [ -f "$dir/data/postmaster.pid" ] || return 0
  as_owner "$(bindir)/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null 2>&1 ||
    as_owner "$(bindir)/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
}

cmd=${1:-}
case "$cmd" in
  start | stop | url | env | psql)
    [ $# -ge 2 ] || die "usage: $0 $cmd DIR"
    ;;
esac
case "$cmd" in
  start) start "$2" ;;
  stop) stop "$2" ;;
  url) url "$(cd "$2" && pwd)" ;;
  env) echo "export EI_TEST_PG='$(url "$(cd "$2" && pwd)")' EI_PG_BIN='$(bindir)'" ;;
  psql)
    dir=$(cd "$2" && pwd)
    shift 2
    exec "$(bindir)/psql" -X -h "$dir" -U postgres -d postgres "$@"
    ;;
  bindir) bindir ;;
  *)
    sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
    [ "$cmd" = "-h" ] || [ "$cmd" = "--help" ] || exit 2
    ;;
esac
