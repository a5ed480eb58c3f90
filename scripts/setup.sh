#!/usr/bin/env bash
# Installs what a fresh machine lacks to build and test the workspace:
# libclang (RocksDB's bindgen), sccache (caches RocksDB's C++ build), PostgreSQL's
# server binaries (the PostgreSQL store's tests start throwaway clusters with
# scripts/pg.sh), and the Python SOAP client zeep (the WSDL import test).
# Idempotent; safe to run often.
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
need_apt=()
# libclang for bindgen (libclang-cpp, which fresh machines have, does not do).
if ! dpkg-query -W -f='${Status}' libclang-dev 2>/dev/null | grep -q 'install ok installed'; then
  need_apt+=(libclang-dev)
fi
if ! command -v sccache >/dev/null 2>&1; then need_apt+=(sccache); fi
if ! command -v python3 >/dev/null 2>&1; then need_apt+=(python3 python3-pip); fi
# PostgreSQL: only its binaries (Debian keeps them in /usr/lib/postgresql/N/bin);
# the tests start their own clusters (scripts/pg.sh).
need_pg=false
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && [ -z "${EI_PG_BIN:-}" ]; then
  need_pg=true
fi
apt_install() {
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
}
if [ ${#need_apt[@]} -gt 0 ] || $need_pg; then
  $SUDO apt-get update -qq
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing ${need_apt[*]}" >&2
  apt_install "${need_apt[@]}"
fi
if $need_pg; then
  echo "setup: installing postgresql" >&2
  # postgresql-common first, told not to create (and start) the default cluster on
  # port 5432 when the server package is installed: nothing here uses it.
  apt_install --no-install-recommends postgresql-common
  $SUDO sed -ri 's/^#? *create_main_cluster *=.*$/create_main_cluster = false/' \
    /etc/postgresql-common/createcluster.conf
  apt_install --no-install-recommends postgresql
fi

if ! python3 -c 'import zeep' >/dev/null 2>&1; then
  echo "setup: installing zeep" >&2
  python3 -m pip install --quiet zeep 2>/dev/null || python3 -m pip install --quiet --break-system-packages zeep
fi
