#!/usr/bin/env bash
# A local PostgreSQL for the store tests (tests/test_store_*.py), from Debian's packages.
#
# Installs postgresql if missing, starts (or creates) a cluster, and makes a role and database that the
# tests use: livewatch / livewatch on 127.0.0.1, database livewatch_test (each test works in its own
# schema inside it). Needs root (CI runs as root). Safe to run again.
#
# Prints exactly one line and always exits 0, so the caller can export it:
#   LIVEWATCH_TEST_PG_URL=postgresql+psycopg://livewatch:livewatch@127.0.0.1:5432/livewatch_test
# or, when no server could be had, the reason the PostgreSQL tests will give for skipping:
#   LIVEWATCH_TEST_PG_UNAVAILABLE=<why>
set -uo pipefail

unavailable() {
  echo "LIVEWATCH_TEST_PG_UNAVAILABLE=$*"
  exit 0
}

[ "$(id -u)" = 0 ] || unavailable "tests/store_pg_setup.sh must run as root to install and start PostgreSQL"

if ! command -v pg_lsclusters >/dev/null 2>&1; then
  command -v apt-get >/dev/null 2>&1 || unavailable "apt-get is not available to install Debian's postgresql"
  export DEBIAN_FRONTEND=noninteractive
  { apt-get update -qq && apt-get install -y -qq postgresql; } >/dev/null 2>&1 \
    || unavailable "apt-get install postgresql failed (no package mirror reachable?)"
fi

cluster="$(pg_lsclusters -h 2>/dev/null | head -n 1)"
if [ -z "$cluster" ]; then
  version="$(ls /usr/lib/postgresql 2>/dev/null | sort -V | tail -n 1)"
  [ -n "$version" ] || unavailable "postgresql is installed but no server version is under /usr/lib/postgresql"
  pg_createcluster "$version" main >/dev/null 2>&1 || unavailable "pg_createcluster $version main failed"
  cluster="$(pg_lsclusters -h | head -n 1)"
fi
read -r version name port status _ <<<"$cluster"
if [ "$status" != "online" ]; then
  pg_ctlcluster "$version" "$name" start >/dev/null 2>&1 \
    || unavailable "pg_ctlcluster $version $name start failed (see /var/log/postgresql)"
fi

as_postgres() { su postgres -s /bin/sh -c "psql -p $port -qtAX -v ON_ERROR_STOP=1 $*"; }
for _ in $(seq 1 30); do
  as_postgres "-c 'select 1'" >/dev/null 2>&1 && break
  sleep 1
done
if [ "$(as_postgres "-c \"select 1 from pg_roles where rolname = 'livewatch'\"" 2>/dev/null)" != 1 ]; then
  as_postgres "-c \"create role livewatch login password 'livewatch'\"" >/dev/null 2>&1 \
    || unavailable "could not create the livewatch role in cluster $version/$name"
fi
if [ "$(as_postgres "-c \"select 1 from pg_database where datname = 'livewatch_test'\"" 2>/dev/null)" != 1 ]; then
  as_postgres "-c 'create database livewatch_test owner livewatch'" >/dev/null 2>&1 \
    || unavailable "could not create the livewatch_test database in cluster $version/$name"
fi
PGPASSWORD=livewatch psql -h 127.0.0.1 -p "$port" -U livewatch -d livewatch_test -qtAX -c 'select 1' >/dev/null 2>&1 \
  || unavailable "PostgreSQL $version is running but livewatch@127.0.0.1:$port cannot log in"
echo "LIVEWATCH_TEST_PG_URL=postgresql+psycopg://livewatch:livewatch@127.0.0.1:$port/livewatch_test"
