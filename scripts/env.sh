# Sourced by the README commands and .ci/run: a target dir outside the clone that
# survives between runs, and sccache for the C++ when it is installed and starts.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ei-target}"
if [ -z "${RUSTC_WRAPPER:-}" ] && command -v sccache >/dev/null 2>&1; then
  if sccache --start-server >/dev/null 2>&1 || sccache --show-stats >/dev/null 2>&1; then
    export RUSTC_WRAPPER=sccache
  fi
fi
