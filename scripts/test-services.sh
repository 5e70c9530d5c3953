#!/usr/bin/env bash
# What the test suite talks to, on loopback: Redis on 127.0.0.1:6379 and PostgreSQL on
# 127.0.0.1:5432 with a database `test` that user `postgres` reaches without a password; and the
# binaries of the envtest control plane (tests/envtest/build.sh: built from Go modules once, then
# reused from the user cache; the tests start them).
#
#   bash scripts/test-services.sh          install what is missing (Debian packages), start, wait,
#                                          build or reuse the control plane
#   bash scripts/test-services.sh status   say whether both answer (exit 1 if not)
#
# Servers that already answer are left as they are (never restarted, never stopped). Needs root
# (or sudo) only for what it has to install or start. `.ci/run` calls this script, so the README's
# test command and CI start the same servers the same way.
set -euo pipefail

REDIS_PORT=6379
PG_PORT=5432
PG_DATABASE=test

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
answers() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
log() { printf 'test-services: %s\n' "$*" >&2; }

wait_for() {  # wait_for NAME PORT: up to 60 s
  local i
  for i in $(seq 1 120); do
    answers "$2" && return 0
    sleep 0.5
  done
  log "$1 did not answer on 127.0.0.1:$2 within 60 s"
  return 1
}

install_missing() {
  local wanted=()
  command -v redis-server >/dev/null || wanted+=(redis-server)
  compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null || wanted+=(postgresql)
  [ ${#wanted[@]} -eq 0 ] && return 0
  log "installing ${wanted[*]} from Debian's packages"
  as_root apt-get update -qq
  # Installing must not try to start services through an init system that is not running.
  DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 as_root apt-get install -y -qq --no-install-recommends \
    "${wanted[@]}" >/dev/null
}

start_redis() {
  if answers "$REDIS_PORT"; then log "redis already answers on $REDIS_PORT"; return 0; fi
  local dir=/tmp/kuberec-redis
  mkdir -p "$dir"
  redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save "" \
    --appendonly no --dir "$dir" --logfile "$dir/redis.log"
  wait_for redis "$REDIS_PORT"
  log "redis started on 127.0.0.1:$REDIS_PORT"
}

pg_version() { ls /usr/lib/postgresql | sort -V | tail -1; }

trust_local_connections() {  # HBA: trust on loopback and the local socket (test machines only)
  local hba=$1
  if ! grep -q '^# kuberec test-services' "$hba"; then
    as_root cp "$hba" "$hba.orig"
    as_root tee "$hba" >/dev/null <<'EOF'
# kuberec test-services: trust for local connections (a test machine; see scripts/test-services.sh)
local   all   all                  trust
host    all   all   127.0.0.1/32   trust
host    all   all   ::1/128        trust
EOF
  fi
}

start_postgres() {
  local version cluster=main
  version=$(pg_version)
  if ! answers "$PG_PORT"; then
    if [ ! -d "/etc/postgresql/$version/$cluster" ]; then
      as_root pg_createcluster --port "$PG_PORT" "$version" "$cluster" >/dev/null
    fi
    trust_local_connections "/etc/postgresql/$version/$cluster/pg_hba.conf"
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" "$cluster" start
    wait_for postgresql "$PG_PORT"
    log "postgresql $version started on 127.0.0.1:$PG_PORT"
  else
    log "postgresql already answers on $PG_PORT"
  fi
  local i
  for i in $(seq 1 60); do
    psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -Atqc 'select 1' >/dev/null 2>&1 && break
    sleep 0.5
  done
  if ! psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -Atqc 'select 1' >/dev/null 2>&1; then
    log "postgresql answers on $PG_PORT but user postgres cannot log in without a password;" \
      "allow trust for local connections in its pg_hba.conf"
    return 1
  fi
  if [ -z "$(psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -Atqc \
      "select 1 from pg_database where datname = '$PG_DATABASE'")" ]; then
    psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -qc "create database $PG_DATABASE"
    log "created database $PG_DATABASE"
  fi
}

build_control_plane() {
  local t=$SECONDS folder
  folder=$(bash "$(dirname "$0")/../tests/envtest/build.sh" | tail -1)
  log "envtest control plane in $folder ($((SECONDS - t)) s)"
}

status() {
  local ok=0
  if answers "$REDIS_PORT"; then echo "redis: up on 127.0.0.1:$REDIS_PORT"; else echo "redis: down"; ok=1; fi
  if psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -d "$PG_DATABASE" -Atqc 'select 1' >/dev/null 2>&1
  then echo "postgresql: up on 127.0.0.1:$PG_PORT, database $PG_DATABASE"
  else echo "postgresql: down (or no database $PG_DATABASE)"; ok=1; fi
  if folder=$(bash "$(dirname "$0")/../tests/envtest/build.sh" --check 2>/dev/null | tail -1); then
    echo "envtest control plane: built in $folder"
  else echo "envtest control plane: not built (bash tests/envtest/build.sh)"; ok=1; fi
  return $ok
}

case "${1:-start}" in
  start) install_missing; start_redis; start_postgres; build_control_plane; status ;;
  status) status ;;
  *) echo "usage: $0 [start|status]" >&2; exit 2 ;;
esac
