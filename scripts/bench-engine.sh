#!/usr/bin/env bash
# One command for the engine benchmark: a throw-away PostgreSQL, `cargo bench --bench engine`,
# teardown. Numbers go in docs/engine.md.
set -euo pipefail
cd "$(dirname "$0")/.."
scratch=$(mktemp -d -t rollback-bot-bench.XXXXXX)
trap 'bash scripts/postgres.sh down "$scratch" >/dev/null 2>&1; rm -rf "$scratch"' EXIT
bash scripts/postgres.sh up "$scratch"
# shellcheck disable=SC1091
. "$scratch/pg.env"
export DATABASE_URL
cargo bench --locked --bench engine
