#!/usr/bin/env bash
# Entrypoint of localhost/postgres:15-bookworm: the official postgres image's contract, written for
# this image (not a copy of upstream's script).
#
#   POSTGRES_USER       superuser to create (default postgres)
#   POSTGRES_PASSWORD   its password; required unless POSTGRES_HOST_AUTH_METHOD=trust
#   POSTGRES_DB         database to create (default: $POSTGRES_USER)
#   PGDATA              cluster directory (default /var/lib/postgresql/data; may be a subdirectory)
#   POSTGRES_HOST_AUTH_METHOD  pg_hba method for TCP connections from anywhere (default scram-sha-256)
#   POSTGRES_INITDB_ARGS       extra initdb arguments
#
# On an empty PGDATA: initdb (as uid 999), a temporary server on the unix socket only, the database,
# /docker-entrypoint-initdb.d/*.sh (executed when executable, else sourced) and *.sql / *.sql.gz in
# name order, with PGHOST/PGUSER/PGDATABASE/PGPASSWORD set for psql; then the temporary server
# stops. Finally: exec postgres -c listen_addresses='*' with the container's arguments.
# Started as root it prepares the directories and re-executes itself as uid 999.
set -Eeuo pipefail

log() { printf '%s [entrypoint] %s\n' "$(date -u '+%Y-%m-%d %H:%M:%S UTC')" "$*"; }
die() { printf 'docker-entrypoint.sh: error: %s\n' "$*" >&2; exit 1; }

if [ "$#" -eq 0 ] || [ "${1:0:1}" = '-' ]; then
  set -- postgres "$@"
fi
if [ "$1" != postgres ]; then
  exec "$@" # bash, psql, pg_isready ...
fi
shift

export POSTGRES_USER="${POSTGRES_USER:-postgres}"
export POSTGRES_DB="${POSTGRES_DB:-$POSTGRES_USER}"
export PGDATA="${PGDATA:-/var/lib/postgresql/data}"
SOCKET_DIR=/var/run/postgresql
INITDB_DIR="${POSTGRES_INITDB_DIR:-/docker-entrypoint-initdb.d}"

if [ "$(id -u)" = 0 ]; then
  mkdir -p "$PGDATA" "$SOCKET_DIR"
  chown 999:999 "$PGDATA" "$SOCKET_DIR"
  chmod 700 "$PGDATA"
  exec setpriv --reuid=999 --regid=999 --init-groups "${BASH_SOURCE[0]}" postgres "$@"
fi

# PGDATA may be a subdirectory of the mounted volume: create it, owner-only as postgres requires.
mkdir -p "$PGDATA" 2>/dev/null || die "cannot create PGDATA $PGDATA as uid $(id -u) (is the volume writable? fsGroup 999)"
chmod 700 "$PGDATA" 2>/dev/null || true

init_cluster() {
  local auth="${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}"
  if [ -z "${POSTGRES_PASSWORD:-}" ] && [ "$auth" != trust ]; then
    die "the database is uninitialized and POSTGRES_PASSWORD is not set; set it (or POSTGRES_HOST_AUTH_METHOD=trust, which lets anyone in without a password)"
  fi
  log "initdb in $PGDATA (user $POSTGRES_USER, host auth $auth)"
  local initdb=(initdb --username="$POSTGRES_USER" --auth-local=trust --auth-host="$auth") pwfile=""
  if [ -n "${POSTGRES_PASSWORD:-}" ]; then
    # Never on the command line; an owner-only file in /tmp, removed at once (no /dev/fd needed).
    pwfile="$(umask 077 && mktemp)"
    printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
    initdb+=(--pwfile="$pwfile")
  fi
  # shellcheck disable=SC2086 # POSTGRES_INITDB_ARGS is a list of words, as upstream
  if ! "${initdb[@]}" ${POSTGRES_INITDB_ARGS:-} >/dev/null; then
    [ -z "$pwfile" ] || rm -f "$pwfile"
    die "initdb failed"
  fi
  [ -z "$pwfile" ] || rm -f "$pwfile"
  printf '\n# From docker-entrypoint.sh: TCP connections from anywhere.\nhost all all all %s\n' "$auth" >>"$PGDATA/pg_hba.conf"

  log "temporary server on the unix socket only"
  pg_ctl --pgdata="$PGDATA" --wait --silent \
    --options="-c listen_addresses='' -c unix_socket_directories=$SOCKET_DIR" start

  export PGHOST="$SOCKET_DIR" PGUSER="$POSTGRES_USER" PGPASSWORD="${POSTGRES_PASSWORD:-}"
  local psql=(psql --no-psqlrc --no-password --set ON_ERROR_STOP=1 --quiet)
  if [ "$POSTGRES_DB" != postgres ]; then
    "${psql[@]}" --dbname postgres --set db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";'
  fi
  export PGDATABASE="$POSTGRES_DB"

  local f
  for f in "$INITDB_DIR"/*; do
    [ -e "$f" ] || continue
    case "$f" in
      *.sh)
        if [ -x "$f" ]; then
          log "running $f"
          "$f"
        else
          log "sourcing $f"
          # shellcheck disable=SC1090
          . "$f"
        fi
        ;;
      *.sql) log "running $f"; "${psql[@]}" --file "$f" ;;
      *.sql.gz) log "running $f"; gunzip -c "$f" | "${psql[@]}" ;;
      *) log "ignoring $f" ;;
    esac
  done

  pg_ctl --pgdata="$PGDATA" --wait --silent --mode=fast stop
  unset PGHOST PGUSER PGPASSWORD PGDATABASE
  log "initialization complete"
}

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  init_cluster
fi

exec postgres -c listen_addresses='*' "$@"
