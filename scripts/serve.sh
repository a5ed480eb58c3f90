#!/usr/bin/env bash
# Runs the server on the embedded store (./data by default); extra flags go to
# ei-server (see `scripts/serve.sh --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
source scripts/env.sh
exec cargo run --release -p ei-server --bin ei-server -- "$@"
