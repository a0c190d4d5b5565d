#!/usr/bin/env bash
# Slash-command ack latency: a throw-away PostgreSQL, `cargo bench --bench slack_ack`,
# teardown. Numbers go in docs/slack.md.
set -euo pipefail
cd "$(dirname "$0")/.."
scratch=$(mktemp -d -t rollback-bot-bench.XXXXXX)
trap 'bash scripts/postgres.sh down "$scratch" >/dev/null 2>&1; rm -rf "$scratch"' EXIT
bash scripts/postgres.sh up "$scratch"
# shellcheck disable=SC1091
. "$scratch/pg.env"
export DATABASE_URL
cargo bench --locked --bench slack_ack
