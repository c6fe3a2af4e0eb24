# shellcheck shell=bash
# Shared helpers for the scripts under hack/. Source it; do not run it.
# Everything installed lives in $EXCHANGE_CACHE (outside the repo) so a second run is a no-op.
set -euo pipefail

EXCHANGE_CACHE="${EXCHANGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/exchange}"
EXCHANGE_BIN="$EXCHANGE_CACHE/bin"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export EXCHANGE_CACHE EXCHANGE_BIN REPO_ROOT
mkdir -p "$EXCHANGE_BIN"

log() { printf '[%s] %s\n' "$(basename "$0")" "$*" >&2; }
die() { printf '[%s] error: %s\n' "$(basename "$0")" "$*" >&2; exit 1; }

# have_stamp NAME VERSION: true when NAME was already installed at VERSION.
have_stamp() { [ "$(cat "$EXCHANGE_CACHE/stamps/$1" 2>/dev/null || true)" = "$2" ]; }
# write_stamp NAME VERSION: record a finished install.
write_stamp() { mkdir -p "$EXCHANGE_CACHE/stamps"; printf '%s' "$2" >"$EXCHANGE_CACHE/stamps/$1"; }

# apt_install PKG...: Debian packages, as root or through sudo.
apt_install() {
  local sudo=""
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || die "$* missing and not root (no sudo): install it and rerun"
    sudo="sudo"
  fi
  log "apt-get install $*"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# ensure_java_maven: Java 17+ and Maven, from Debian when missing (the JVM engines need both).
ensure_java_maven() {
  local major
  major="$(java -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p' || true)"
  if ! command -v java >/dev/null || [ "${major%%.*}" -lt 17 ] 2>/dev/null || [ -z "$major" ]; then
    apt_install openjdk-17-jre-headless
  fi
  command -v mvn >/dev/null || apt_install maven
}
