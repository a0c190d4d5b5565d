#!/usr/bin/env bash
# One command for the engine benchmark on a throw-away PostgreSQL; numbers go in docs/engine.md.
#   scripts/bench-engine.sh [--smoke]
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/bench-common.sh
. scripts/bench-common.sh
exec scripts/with-postgres.sh "${bench_cargo[@]}" engine
