#!/usr/bin/env bash
# Installs the database servers the fleet tests and the lease bench run on
# loopback, skipping what is already there (safe to run again and again):
#   - redis-server (Debian's package),
#   - PostgreSQL (Debian's package: initdb, pg_ctl, postgres under
#     /usr/lib/postgresql/<major>/bin).
# Installing needs root and apt-get. Nothing is started here and no
# system-wide cluster is used: the tests start private servers on free ports
# (bindings/js/support/servers.mjs) and stop and remove them afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[setup-servers] %s\n' "$*"; }

have_redis() { command -v redis-server >/dev/null 2>&1 || [ -x /usr/bin/redis-server ]; }
have_postgres() { compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null && compgen -G '/usr/lib/postgresql/*/bin/pg_ctl' >/dev/null; }

missing=()
have_redis || missing+=(redis-server)
have_postgres || missing+=(postgresql)

if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    log "missing: ${missing[*]}; run this script as root, or apt-get install ${missing[*]}"
    exit 1
  fi
  command -v apt-get >/dev/null 2>&1 || { log "apt-get not available: install ${missing[*]} yourself"; exit 1; }
  log "installing ${missing[*]} (apt)"
  export DEBIAN_FRONTEND=noninteractive
  # Try with the lists already on the machine first; refresh them only if that fails.
  if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1; then
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

have_redis || { log "redis-server still missing after the install"; exit 1; }
have_postgres || { log "PostgreSQL binaries still missing under /usr/lib/postgresql/*/bin"; exit 1; }
# A private cluster is initialised as this OS user when running as root.
if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
  log "the postgres OS user is missing (the postgresql package creates it)"
  exit 1
fi
pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
log "servers ready ($(redis-server --version | awk '{print $1, $2, $3}'); PostgreSQL $("$pg_bin/postgres" --version | awk '{print $3}'))"
