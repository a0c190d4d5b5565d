#!/usr/bin/env bash
# Regenerates (or with --check, verifies) the committed sqlx offline query metadata in .sqlx/,
# which lets every build check its queries without a database.
#
# Needs a PostgreSQL: DATABASE_URL when set, otherwise a throw-away one (scripts/postgres.sh).
# The migrations are applied to it first, so the queries are checked against the real schema.
set -euo pipefail
cd "$(dirname "$0")/.."

check=false
[ "${1:-}" = "--check" ] && check=true

scratch=$(mktemp -d)
cleanup() {
  [ -n "${own_pg:-}" ] && bash scripts/postgres.sh down "$scratch" >/dev/null 2>&1
  rm -rf "$scratch"
}
trap cleanup EXIT

if [ -z "${DATABASE_URL:-}" ]; then
  own_pg=1
  bash scripts/postgres.sh up "$scratch" >/dev/null
  # shellcheck disable=SC1091
  . "$scratch/pg.env"
fi
# A fresh database so the schema is exactly what the migrations make.
db="sqlx_prepare_$$"
base=${DATABASE_URL%/*}
psql -q "$DATABASE_URL" -c "create database $db" >/dev/null
for m in migrations/*.sql; do
  psql -q "$base/$db" -v ON_ERROR_STOP=1 -f "$m" >/dev/null
done

out="$scratch/sqlx"
mkdir -p "$out"
# The macros write one file per query they check online into SQLX_OFFLINE_DIR; force them to
# run again by making cargo see every source file as changed.
find src tests benches -name '*.rs' -exec touch {} +
SQLX_OFFLINE=false DATABASE_URL="$base/$db" SQLX_OFFLINE_DIR="$out" cargo build -q --all-targets
psql -q "$DATABASE_URL" -c "drop database $db" >/dev/null

if $check; then
  if ! diff -r "$out" .sqlx >/dev/null; then
    echo "error: .sqlx/ is out of date with the queries or migrations; run scripts/sqlx-prepare.sh" >&2
    diff -r "$out" .sqlx | head -20 >&2
    exit 1
  fi
  echo "sqlx: offline query metadata is up to date ($(ls .sqlx | wc -l) queries)"
else
  rm -rf .sqlx
  cp -r "$out" .sqlx
  echo "sqlx: wrote $(ls .sqlx | wc -l) queries to .sqlx/"
fi
