#!/usr/bin/env bash
# Runs a command with DATABASE_URL pointing at a throw-away PostgreSQL (scripts/postgres.sh),
# torn down afterwards:  scripts/with-postgres.sh cargo bench --bench engine
set -euo pipefail
cd "$(dirname "$0")/.."
scratch=$(mktemp -d -t rollback-bot-pg.XXXXXX)
trap 'bash scripts/postgres.sh down "$scratch" >/dev/null 2>&1; rm -rf "$scratch"' EXIT
bash scripts/postgres.sh up "$scratch"
# shellcheck disable=SC1091
. "$scratch/pg.env"
export DATABASE_URL
"$@"
