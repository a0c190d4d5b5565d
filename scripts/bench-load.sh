#!/usr/bin/env bash
# Load benchmark of the real binary in its production configuration (benches/load.rs): two
# replicas with the default workers, N rollbacks validated against a real Prometheus, locked
# and DM'd, probes approved while they validate, and the same N by parallel kubectl; on a
# throw-away Postgres, kwok control plane and Prometheus, all torn down afterwards.
#
#   scripts/bench-load.sh [--smoke] [N]     (default 200; --smoke: N = 3, nothing timed)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/bench-common.sh
. "$here/scripts/bench-common.sh"
n=${1:-}
dir=$(mktemp -d "${TMPDIR:-/tmp}/rbt-load.XXXXXX")
cleanup() {
  bash "$here/scripts/prometheus.sh" down "$dir" >/dev/null || echo "bench: prometheus teardown failed ($dir)" >&2
  bash "$here/scripts/cluster.sh" down "$dir" >/dev/null || echo "bench: cluster teardown failed ($dir)" >&2
  bash "$here/scripts/postgres.sh" down "$dir" >/dev/null || echo "bench: postgres teardown failed ($dir)" >&2
  rm -rf "$dir"
}
trap cleanup EXIT

cd "$here"
bash scripts/build-testenv.sh >/dev/null
# Compile first so the cluster is not idling during a cold release build; the simulator is
# found next to the bot's binary of the same profile.
if [ -n "$bench_smoke" ]; then
  cargo build --locked -p service-simulator
  cargo test --locked --all-features --bench load --no-run
else
  cargo build --locked --release -p service-simulator
  cargo bench --locked --bench load --no-run
fi
bash scripts/postgres.sh up "$dir"
bash scripts/cluster.sh up "$dir"
bash scripts/prometheus.sh up "$dir"
# shellcheck source=/dev/null
. "$dir/pg.env"
# shellcheck source=/dev/null
. "$dir/env"
# shellcheck source=/dev/null
. "$dir/prom.env"
export DATABASE_URL
LOAD_N=$n cargo_bench load
