#!/usr/bin/env bash
# The test command (README, .ci/run): every unit, integration and end-to-end test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
source scripts/env.sh
cargo test --workspace "$@"
