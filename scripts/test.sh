#!/usr/bin/env bash
# The whole test suite, on a fresh machine or a warm one (`make test`).
#
# 1. builds the Kubernetes control plane and Argo CD from Go modules once (cached outside the
#    tree; the GitOps tests start Argo CD themselves, scripts/argocd.sh) and installs headless
#    Chromium and chromedriver for the sandbox's browser test when missing,
# 2. starts a throw-away PostgreSQL, a kwok cluster and a Prometheus in a scratch directory,
# 3. checks formatting, lints, the sqlx offline metadata and the Dockerfile's build, then runs
#    every test, then every benchmark script in its smoke mode,
# 4. tears everything down, also when a step fails or the run is interrupted.
set -euo pipefail
cd "$(dirname "$0")/.."

started=$(date +%s)
bash scripts/build-testenv.sh
# Argo CD for the GitOps tests (tests/argocd.rs starts it when it runs; built here so the
# build does not count against a test's time).
bash scripts/build-argocd.sh
ROLLBACK_BOT_CHROMEDRIVER=$(bash scripts/browser.sh)
export ROLLBACK_BOT_CHROMEDRIVER

scratch=$(mktemp -d -t rollback-bot-test.XXXXXX)
cleanup() {
  local status=$?
  trap - EXIT INT TERM
  bash scripts/prometheus.sh down "$scratch" >/dev/null 2>&1 || echo "test.sh: prometheus teardown failed" >&2
  bash scripts/argocd.sh down "$scratch" >/dev/null 2>&1 || echo "test.sh: argocd teardown failed" >&2
  bash scripts/cluster.sh down "$scratch" >/dev/null 2>&1 || echo "test.sh: cluster teardown failed" >&2
  bash scripts/postgres.sh down "$scratch" >/dev/null 2>&1 || echo "test.sh: postgres teardown failed" >&2
  rm -rf "$scratch"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

bash scripts/postgres.sh up "$scratch"
# shellcheck disable=SC1091
. "$scratch/pg.env"
bash scripts/cluster.sh up "$scratch"
# shellcheck disable=SC1091
. "$scratch/env"
bash scripts/prometheus.sh up "$scratch"
# shellcheck disable=SC1091
. "$scratch/prom.env"
export DATABASE_URL

cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings
bash scripts/sqlx-prepare.sh --check
bash scripts/check-dockerfile.sh
# Tests mostly wait on Postgres and on rollouts, so run more of them at once than there are cores.
RUST_TEST_THREADS=${RUST_TEST_THREADS:-8} cargo test --locked --all-features

# Every benchmark script once, in its smoke mode (a few iterations, the test build's
# artefacts, its own throw-away environment, nothing timed), so that none of them rots.
for bench in engine slack executor footprint recovery load; do
  echo "test.sh: scripts/bench-$bench.sh --smoke"
  bash "scripts/bench-$bench.sh" --smoke
done

echo "test.sh: all tests passed in $(($(date +%s) - started))s"
