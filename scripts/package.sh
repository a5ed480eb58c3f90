#!/usr/bin/env bash
# Builds the Debian packages ei-server and ei-loader with cargo-deb into
# $CARGO_TARGET_DIR/debian/. With --install-check (what .ci/run does; it changes
# this machine, so only on CI or a throwaway machine) it then installs both with
# dpkg -i, checks what the maintainer scripts made (user ei, /var/lib/ei, the
# conffile's 0640 root:ei), verifies the unit with systemd-analyze, runs the
# installed binaries (--help, and the server as user ei on the packaged
# configuration until /readyz answers), installs again (an upgrade) and purges.
#
#   scripts/package.sh [--profile PROFILE] [--install-check]
#
# PROFILE defaults to release (what a release ships). CI passes `--profile dev` to
# package the binaries its tests already built (see README, "Packaging").
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

CARGO_DEB_VERSION=3.8.0
profile=release
install_check=false
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) profile="$2"; shift 2 ;;
    --install-check) install_check=true; shift ;;
    *) echo "package.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

if ! cargo deb --version 2>/dev/null | grep -q "$CARGO_DEB_VERSION"; then
  echo "package.sh: installing cargo-deb $CARGO_DEB_VERSION" >&2
  cargo install cargo-deb --locked --version "$CARGO_DEB_VERSION"
fi

out="$CARGO_TARGET_DIR/debian"
rm -rf "$out" && mkdir -p "$out"
build=()
if [ "$profile" = dev ]; then
  # CI: package the binaries `cargo test --workspace` built (building them again
  # here with another feature unification would recompile), compressed fast
  # (xz of the debug-size binaries took 99 s, --fast 29 s for the whole check).
  # cargo-deb warns about the dev profile (it is for releases); here it only
  # checks the packaging.
  for bin in ei-server ei-loader; do
    [ -x "$CARGO_TARGET_DIR/debug/$bin" ] || cargo build -p "$bin" --bin "$bin"
  done
  build=(--no-build --fast)
fi
for pkg in ei-server ei-loader; do
  cargo deb -p "$pkg" --profile "$profile" "${build[@]}" --output "$out/"
done
server_deb=$(ls "$out"/ei-server_*.deb)
loader_deb=$(ls "$out"/ei-loader_*.deb)
echo "package.sh: built $server_deb and $loader_deb" >&2
$install_check || exit 0

fail() { echo "package.sh: FAILED: $*" >&2; exit 1; }

if ! command -v systemd-analyze >/dev/null 2>&1; then
  echo "package.sh: installing systemd (for systemd-analyze)" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq systemd >/dev/null
fi

$SUDO dpkg -i "$server_deb" "$loader_deb"
dpkg-query -W -f='${Conffiles}\n' ei-server | grep -q '/etc/ei/ei.toml' || fail "/etc/ei/ei.toml is not a conffile"
getent passwd ei >/dev/null || fail "user ei missing"
[ "$(stat -c '%U:%G %a' /var/lib/ei)" = "ei:ei 750" ] || fail "/var/lib/ei is $(stat -c '%U:%G %a' /var/lib/ei)"
[ "$(stat -c '%U:%G %a' /etc/ei/ei.toml)" = "root:ei 640" ] || fail "/etc/ei/ei.toml is $(stat -c '%U:%G %a' /etc/ei/ei.toml)"
[ -L /etc/systemd/system/multi-user.target.wants/ei-server.service ] || fail "the unit is not enabled"

unit=$(dpkg -L ei-server | grep '/ei-server\.service$')
$SUDO systemd-analyze verify "$unit" || fail "systemd-analyze verify $unit"
echo "package.sh: systemd-analyze verify $unit: ok" >&2
/usr/bin/ei-server --help >/dev/null || fail "ei-server --help"
/usr/bin/ei-loader --help >/dev/null || fail "ei-loader --help"

# The packaged configuration, as the service's user: the server opens its store in
# /var/lib/ei/data and answers /readyz (on a free port instead of 8080).
log=$(mktemp)
$SUDO setpriv --reuid=ei --regid=ei --init-groups /usr/bin/ei-server --config /etc/ei/ei.toml \
  --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 2>"$log" &
pid=$!
addr=""
for _ in $(seq 1 600); do
  addr=$(sed -n 's/.*ei-server listening.* addr=\([0-9.:]*\).*/\1/p' "$log" | head -1)
  [ -n "$addr" ] && break
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
[ -n "$addr" ] || { cat "$log" >&2; fail "the installed server did not start"; }
curl -fsS "http://$addr/readyz" | grep -q READY || fail "/readyz of the installed server"
$SUDO kill -TERM "$pid"
wait "$pid" || fail "the installed server did not exit cleanly"
[ -d /var/lib/ei/data ] || fail "no store in /var/lib/ei/data"
rm -f "$log"

# Installing again is an upgrade: the maintainer scripts must be idempotent.
$SUDO dpkg -i "$server_deb"
$SUDO dpkg --purge ei-server ei-loader
[ ! -e /etc/ei/ei.toml ] || fail "purge left /etc/ei/ei.toml"
[ -d /var/lib/ei/data ] || fail "purge removed the index"
echo "package.sh: install, verify, run, upgrade and purge: ok" >&2
