#!/usr/bin/env bash
# A long, bounded fuzzing session (not part of CI or `make test`): the property tests in
# tests/fuzz_properties.rs — slash-command text, interaction payload parsing, Slack request
# signatures, configuration files — with many more cases than the normal test run's 256.
#
#   scripts/fuzz.sh [CASES]     CASES per property (default 20000)
#   FUZZ_TIMEOUT=SECONDS        stop after this long (default 1800); a timeout fails the run
#
# Any panic or violated property fails with proptest's minimal failing input. Record the
# result (cases, properties, time) in docs/reliability.md, section "Fuzzing".
set -euo pipefail
cd "$(dirname "$0")/.."
cases=${1:-20000}
limit=${FUZZ_TIMEOUT:-1800}

cargo test --locked --test fuzz_properties --no-run 2>/dev/null
started=$(date +%s)
out=$(mktemp)
trap 'rm -f "$out"' EXIT
status=0
PROPTEST_CASES=$cases timeout "$limit" \
  cargo test --locked --test fuzz_properties -- --test-threads="${FUZZ_THREADS:-1}" 2>&1 | tee "$out" || status=$?
took=$(($(date +%s) - started))
properties=$(sed -n 's/^test result: ok\. \([0-9]*\) passed.*/\1/p' "$out")
if [ "$status" -ne 0 ] || [ -z "$properties" ]; then
  echo "fuzz: FAILED after ${took}s (exit $status); see the minimal failing input above" >&2
  exit 1
fi
echo "fuzz: $properties properties x $cases cases = $((properties * cases)) runs in ${took}s, no panic, no violated property"
