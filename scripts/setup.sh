#!/usr/bin/env bash
# Installs what a fresh machine lacks to build and test the workspace:
# libclang (RocksDB's bindgen), sccache (caches RocksDB's C++ build), and the
# Python SOAP client zeep (the WSDL import test). Idempotent; safe to run often.
set -euo pipefail

need_apt=()
# libclang for bindgen (libclang-cpp, which fresh machines have, does not do).
if ! dpkg-query -W -f='${Status}' libclang-dev 2>/dev/null | grep -q 'install ok installed'; then
  need_apt+=(libclang-dev)
fi
if ! command -v sccache >/dev/null 2>&1; then need_apt+=(sccache); fi
if ! command -v python3 >/dev/null 2>&1; then need_apt+=(python3 python3-pip); fi
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  echo "setup: installing ${need_apt[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if ! python3 -c 'import zeep' >/dev/null 2>&1; then
  echo "setup: installing zeep" >&2
  python3 -m pip install --quiet zeep 2>/dev/null || python3 -m pip install --quiet --break-system-packages zeep
fi
