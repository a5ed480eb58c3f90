#!/usr/bin/env bash
# Runs the cargo-fuzz targets (fuzz/: request, reply, registry) for SECONDS each
# (default 30), from the committed corpus and seeds; new inputs go to a temporary
# directory, so the tree stays clean. Exits non-zero on the first crash, whose input
# is left in fuzz/artifacts/TARGET/. On the stable toolchain through RUSTC_BOOTSTRAP
# (cargo-fuzz passes -Zsanitizer); installs cargo-fuzz when it is missing.
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#   scripts/fuzz.sh --merge TARGET   # minimise fuzz/corpus/TARGET (inputs cut to 2 KiB;
#                                    # the seeds keep the big samples) after a long run
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
export RUSTC_BOOTSTRAP=1
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz" >&2
  cargo install cargo-fuzz --version 0.13.2 --locked
fi
if [ "${1:-}" = "--merge" ]; then
  t=$2
  mkdir -p "corpus/$t.min"
  cargo fuzz run -O "$t" "corpus/$t.min" "corpus/$t" "seeds/$t" -- -merge=1 -max_len=2048
  rm -rf "corpus/$t" && mv "corpus/$t.min" "corpus/$t"
  exit 0
fi
secs=${1:-30}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(request reply registry)
cargo fuzz build -O
new=$(mktemp -d)
trap 'rm -rf "$new"' EXIT
for t in "${targets[@]}"; do
  mkdir -p "$new/$t" "corpus/$t"
  echo "fuzz: $t for ${secs}s" >&2
  rc=0
  cargo fuzz run -O "$t" "$new/$t" "corpus/$t" "seeds/$t" -- \
    -max_total_time="$secs" -max_len=65536 -print_final_stats=1 >"$new/$t.log" 2>&1 || rc=$?
  grep -E '^stat::(number_of_executed_units|average_exec_per_sec|new_units_added)' "$new/$t.log" || true
  if [ "$rc" -ne 0 ]; then
    tail -n 80 "$new/$t.log"
    echo "fuzz: $t crashed (input in fuzz/artifacts/$t/)" >&2
    exit 1
  fi
done
