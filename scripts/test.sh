#!/usr/bin/env bash
# The test command (README, .ci/run): every unit, integration and end-to-end test.
# The PostgreSQL tests need a server: unless EI_TEST_PG already names one (a libpq
# URL of a superuser), a throwaway cluster is started in a temp dir (scripts/pg.sh)
# and stopped and removed at the end, also when tests fail or the run is interrupted.
# EI_TEST_PG=off runs without (those tests then skip, saying so).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
source scripts/env.sh
if [ "${EI_TEST_PG:-}" = off ]; then
  unset EI_TEST_PG
elif [ -z "${EI_TEST_PG:-}" ]; then
  pg_dir=$(mktemp -d /tmp/ei-test-pg.XXXXXX)
  # On a signal the cluster is stopped once the running command has ended (Ctrl-C
  # ends cargo and the tests with it).
  trap 'scripts/pg.sh stop "$pg_dir"; rm -rf "$pg_dir"' EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  scripts/pg.sh start "$pg_dir" >/dev/null
  eval "$(scripts/pg.sh env "$pg_dir")"
  echo "test: PostgreSQL for the tests at $EI_TEST_PG" >&2
fi
cargo test --workspace "$@"
