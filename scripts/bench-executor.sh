#!/usr/bin/env bash
# Benchmarks the executor's rollback + verification against `kubectl rollout undo` +
# `kubectl rollout status` on a local kwok control plane (benches/executor.rs).
#
#   scripts/bench-executor.sh [--smoke] [ROUNDS]     (default 10 rounds; --smoke: 1)
#
# Starts its own cluster in a temporary directory and always tears it down. Needs the
# binaries from scripts/build-testenv.sh.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/bench-common.sh
. "$here/scripts/bench-common.sh"
rounds=${1:-${bench_smoke:+1}}
rounds=${rounds:-10}
dir=$(mktemp -d "${TMPDIR:-/tmp}/rbt-bench.XXXXXX")
cleanup() { bash "$here/scripts/cluster.sh" down "$dir" >/dev/null || echo "bench: cluster teardown failed ($dir)" >&2; }
trap cleanup EXIT

# Compile first so the cluster is not idling during a cold release build.
if [ -z "$bench_smoke" ]; then (cd "$here" && cargo bench --locked --bench executor --no-run); fi
bash "$here/scripts/cluster.sh" up "$dir"
# shellcheck source=/dev/null
. "$dir/env"
cd "$here"
ROUNDS=$rounds cargo_bench executor
