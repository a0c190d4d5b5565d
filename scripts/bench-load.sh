#!/usr/bin/env bash
# Load benchmark of the real binary (benches/load.rs): two replicas, N concurrent /rollback
# requests on N Deployments plus N duplicates, all approved at once, on a throw-away Postgres
# and a local kwok control plane, both torn down afterwards.
#
#   scripts/bench-load.sh [N]     (default 100)
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
n=${1:-100}
dir=$(mktemp -d "${TMPDIR:-/tmp}/rbt-load.XXXXXX")
cleanup() {
  bash "$here/scripts/cluster.sh" down "$dir" >/dev/null || echo "bench: cluster teardown failed ($dir)" >&2
  bash "$here/scripts/postgres.sh" down "$dir" >/dev/null || echo "bench: postgres teardown failed ($dir)" >&2
}
trap cleanup EXIT

# Compile first so the cluster is not idling during a cold release build.
(cd "$here" && cargo bench --bench load --no-run)
bash "$here/scripts/postgres.sh" up "$dir"
bash "$here/scripts/cluster.sh" up "$dir"
# shellcheck source=/dev/null
. "$dir/pg.env"
# shellcheck source=/dev/null
. "$dir/env"
export DATABASE_URL
cd "$here"
LOAD_N=$n cargo bench --bench load
