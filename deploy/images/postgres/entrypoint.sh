#!/bin/sh
# First start: initdb with a password for POSTGRES_USER (scram-sha-256 over TCP) and the
# database POSTGRES_DB; every start: run the server in the foreground on 0.0.0.0:5432.
set -eu
user=${POSTGRES_USER:-courier}
password=${POSTGRES_PASSWORD:-courier}
db=${POSTGRES_DB:-courier}
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  pwfile=$(mktemp)
  printf '%s\n' "$password" >"$pwfile"
  initdb -D "$PGDATA" -U "$user" --pwfile="$pwfile" -E UTF8 --locale=C \
    --auth-local=trust --auth-host=scram-sha-256 >/dev/null
  rm -f "$pwfile"
  printf 'host all all 0.0.0.0/0 scram-sha-256\nhost all all ::/0 scram-sha-256\n' >>"$PGDATA/pg_hba.conf"
  postgres -D "$PGDATA" -c listen_addresses='' -k /run/postgresql &
  pid=$!
  until pg_isready -h /run/postgresql -q; do sleep 0.2; done
  if [ "$db" != postgres ]; then createdb -h /run/postgresql -U "$user" "$db"; fi
  kill -INT "$pid"
  wait "$pid" || true
fi
exec postgres -D "$PGDATA" -c listen_addresses='*' -c jit=off -k /run/postgresql
