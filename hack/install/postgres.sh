#!/usr/bin/env bash
# Install PostgreSQL for local dev and tests: Debian's `postgresql` package (apt-get) when no
# supported major is installed yet, then link its bin dir to $EXCHANGE_CACHE/postgres/bin, where
# exchange_devtools.engines.postgres looks first. Clusters are created by the fixtures (initdb in a
# temp dir, free port), never by this script. Idempotent: a second run is a no-op.
set -euo pipefail
# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

# Supported majors, preferred first. Debian bookworm ships 15, trixie 17.
PG_MAJORS=(17 16 15 14)
DEST="$EXCHANGE_CACHE/postgres"

find_bindir() {
  local major
  for major in "${PG_MAJORS[@]}"; do
    for dir in "/usr/lib/postgresql/$major/bin" "/usr/pgsql-$major/bin"; do
      if [ -x "$dir/initdb" ] && [ -x "$dir/postgres" ] && [ -x "$dir/pg_isready" ]; then
        printf '%s\n' "$dir"
        return 0
      fi
    done
  done
  return 1
}

bindir="$(find_bindir || true)"
if [ -n "$bindir" ]; then
  version="$("$bindir/postgres" --version | awk '{print $3}')"
  if have_stamp postgres "$version:$bindir" && [ "$(readlink "$DEST/bin" 2>/dev/null || true)" = "$bindir" ]; then
    log "postgres $version already installed ($bindir)"
    exit 0
  fi
else
  log "no PostgreSQL ${PG_MAJORS[*]} found; installing Debian's postgresql with apt-get"
  command -v apt-get >/dev/null || die "no apt-get here: install PostgreSQL ${PG_MAJORS[*]} (initdb, postgres) and rerun"
  sudo=""
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || die "not root and no sudo: run \`apt-get install -y postgresql\` as root"
    sudo="sudo"
  fi
  # The fixtures make their own clusters; keep the package from creating and starting one on :5432.
  if [ ! -e /etc/postgresql-common/createcluster.conf ]; then
    $sudo mkdir -p /etc/postgresql-common
    printf 'create_main_cluster = false\n' | $sudo tee /etc/postgresql-common/createcluster.conf >/dev/null
  fi
  $sudo apt-get update
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends postgresql
  bindir="$(find_bindir)" || die "apt-get installed postgresql but no initdb/postgres for ${PG_MAJORS[*]} under /usr/lib/postgresql"
  version="$("$bindir/postgres" --version | awk '{print $3}')"
fi

# The server refuses to run as root; the engine module then runs it as this user.
if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
  log "creating the system user postgres (the server refuses to run as root)"
  useradd --system --home-dir /var/lib/postgresql --shell /usr/sbin/nologin postgres
fi

mkdir -p "$DEST"
ln -sfn "$bindir" "$DEST/bin"
write_stamp postgres "$version:$bindir"
log "postgres $version ready: $DEST/bin -> $bindir"
