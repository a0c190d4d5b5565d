#!/usr/bin/env bash
# Footprint of the release binary: its size, and the resident memory (RSS) of an idle
# `rollback-bot serve` (HTTP server, workers, notifier, Postgres pool, one cluster client)
# right after start-up, after 10 s idle, and after 500 health/metrics requests.
# Starts its own throw-away Postgres and kwok cluster; tears them down.
#   scripts/bench-footprint.sh [--smoke]   (--smoke: the debug binary of `cargo test`, 1 s
#                                           idle, 20 requests; nothing here is measured)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/bench-common.sh
. scripts/bench-common.sh
# shellcheck source=scripts/testenv-versions.sh
. scripts/testenv-versions.sh

bash scripts/build-testenv.sh >/dev/null
if [ -n "$bench_smoke" ]; then
  cargo build -q --locked --bin rollback-bot
  binary=target/debug/rollback-bot idle=1 requests=10 kind="debug"
else
  target="$ROLLBACK_BOT_CACHE/docker-target"
  CARGO_TARGET_DIR="$target" cargo build -q --release --locked --bin rollback-bot
  binary="$target/release/rollback-bot" idle=10 requests=250 kind="stripped, release"
fi

scratch=$(mktemp -d -t rollback-bot-footprint.XXXXXX)
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  bash scripts/cluster.sh down "$scratch" >/dev/null 2>&1 || true
  bash scripts/postgres.sh down "$scratch" >/dev/null 2>&1 || true
  rm -rf "$scratch"
}
trap cleanup EXIT
bash scripts/postgres.sh up "$scratch" >/dev/null
bash scripts/cluster.sh up "$scratch" >/dev/null
# shellcheck disable=SC1091
. "$scratch/pg.env"; . "$scratch/env"

# shellcheck source=scripts/free-port.sh
. scripts/free-port.sh
port=$(free_port)
admin_port=$(free_port)
cat >"$scratch/bot.toml" <<TOML
[server]
listen = "127.0.0.1:$port"
admin_listen = "127.0.0.1:$admin_port"
[slack]
incident_channels = ["C0BENCH0001"]
lead_user_ids = ["U0LEAD0001"]
[clusters.local]
kubeconfig = "$ROLLBACK_BOT_TEST_KUBECONFIG"
[services.web]
cluster = "local"
TOML
# A bot token so the Slack notifier runs too; it calls Slack only when a card needs work.
DATABASE_URL=$DATABASE_URL SLACK_BOT_TOKEN=xoxb-footprint SLACK_SIGNING_SECRET=footprint \
  SLACK_API_URL=http://127.0.0.1:9/api/ RUST_LOG=warn "$binary" --config "$scratch/bot.toml" serve 2>"$scratch/bot.log" &
pid=$!
ready=
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$admin_port/readyz" >/dev/null 2>&1 && ready=yes && break
  sleep 0.1
done
if [ -z "$ready" ]; then
  echo "bench-footprint: serve never became ready; its log:" >&2
  cat "$scratch/bot.log" >&2
  exit 1
fi
rss() { awk '/^VmRSS/{printf "%.1f MB", $2/1024}' "/proc/$pid/status"; }
[ -n "$bench_smoke" ] && echo "bench-footprint: smoke run of the debug binary, nothing here is a measurement"
echo "binary: $(du -h "$binary" | cut -f1) ($(stat -c %s "$binary") bytes, $kind)"
echo "serve RSS after start-up:        $(rss)"
sleep "$idle"
echo "serve RSS after $idle s idle:       $(rss)"
for _ in $(seq 1 "$requests"); do
  curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null
  curl -fsS "http://127.0.0.1:$admin_port/metrics" >/dev/null
done
echo "serve RSS after $((2 * requests)) requests:    $(rss)"
