#!/usr/bin/env bash
# Recovery-validation benchmark: time from Prometheus showing the recovered P99 to the verdict,
# and queries per validation, measured by the end-to-end test that rolls back from `:slow`
# (1 s scrape and check intervals, 3 passes in a row). Starts and tears down its own
# PostgreSQL, kwok cluster and Prometheus. Numbers in docs/recovery.md.
#   scripts/bench-recovery.sh [--smoke]   (--smoke: one run instead of three)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/bench-common.sh
. scripts/bench-common.sh

bash scripts/build-testenv.sh
scratch=$(mktemp -d -t rollback-bot-bench-recovery.XXXXXX)
cleanup() {
  bash scripts/prometheus.sh down "$scratch" >/dev/null 2>&1 || true
  bash scripts/cluster.sh down "$scratch" >/dev/null 2>&1 || true
  bash scripts/postgres.sh down "$scratch" >/dev/null 2>&1 || true
  rm -rf "$scratch"
}
trap cleanup EXIT

bash scripts/postgres.sh up "$scratch" >/dev/null
bash scripts/cluster.sh up "$scratch" >/dev/null
bash scripts/prometheus.sh up "$scratch" >/dev/null
# shellcheck disable=SC1091
. "$scratch/pg.env"
# shellcheck disable=SC1091
. "$scratch/env"
# shellcheck disable=SC1091
. "$scratch/prom.env"
export DATABASE_URL
runs=3
[ -n "$bench_smoke" ] && runs=1
for run in $(seq 1 "$runs"); do
  out=$(cargo test --locked --all-features --test recovery_e2e slow_to_a_good -- --nocapture 2>&1) || {
    echo "$out" >&2
    exit 1
  }
  echo "run $run: $(echo "$out" | grep '^bench:')"
done
