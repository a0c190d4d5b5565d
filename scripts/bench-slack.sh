#!/usr/bin/env bash
# Slash-command ack latency on a throw-away PostgreSQL; numbers go in docs/slack.md.
#   scripts/bench-slack.sh [--smoke]
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/bench-common.sh
. scripts/bench-common.sh
exec scripts/with-postgres.sh "${bench_cargo[@]}" slack_ack
