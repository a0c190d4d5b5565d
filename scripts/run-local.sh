#!/usr/bin/env bash
# Runs the bot locally on embedded defaults (`make run`): a throw-away PostgreSQL, the local
# kwok Kubernetes cluster of the test environment with a demo Deployment `demo-api` that has
# a few revisions, a Prometheus scraping a service simulator that plays demo-api (its metrics
# follow the image tag: `:slow`, `:errors`, `:unhealthy`, `:idle`), and `rollback-bot serve` on
# 127.0.0.1:8080, which validates recovery against that Prometheus. Everything is torn down on
# exit.
#
# Slack: without SLACK_BOT_TOKEN, the Slack sandbox (crates/slack-sandbox/src/bin/slack_sandbox.rs, docs/sandbox.md)
# plays Slack on http://127.0.0.1:3000 (ROLLBACK_BOT_SANDBOX_LISTEN): open it in a browser,
# pick who you are and type `/rollback demo-api`. ROLLBACK_BOT_SANDBOX_TRANSPORT=socket_mode
# makes the bot connect to it over Socket Mode instead of HTTP.
# With a real workspace: export SLACK_BOT_TOKEN (and SLACK_APP_TOKEN for Socket Mode, which
# needs no public URL; or SLACK_SIGNING_SECRET for the HTTP transport behind a tunnel).
# The CLI works either way:
#   ROLLBACK_BOT_CONFIG=.testenv/local/rollback-bot.toml target/debug/rollback-bot plan demo-api
#
# The cluster has the deploy lock's admission policy (config/kubernetes/base/deploy-lock.yaml,
# applied by scripts/cluster.sh as a user installs it, README "Deploy lock"),
# so after a rollback `make bad-deploy` is refused until `/rollback unlock` is approved, and
# "Try it" is printed only once Prometheus has demo-api's healthy P99, the baseline the
# recovery check compares against.
#
# For tests (tests/first_run.rs), all optional: ROLLBACK_BOT_LOCAL_STATE (default
# .testenv/local; `make bad-deploy` reads the same variable), ROLLBACK_BOT_LISTEN and
# ROLLBACK_BOT_ADMIN_LISTEN (default 127.0.0.1:8080 and :9090), ROLLBACK_BOT_SANDBOX_LISTEN
# (127.0.0.1:3000) and ROLLBACK_BOT_BIN_DIR (binaries already built there: no cargo build).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

bash scripts/build-testenv.sh
if [ -n "${ROLLBACK_BOT_BIN_DIR:-}" ]; then
  bin=$ROLLBACK_BOT_BIN_DIR
else
  # The sandbox and the simulator are workspace members of their own (crates/), not in the bot.
  cargo build --locked --bin rollback-bot --bin service_simulator --bin slack_sandbox
  bin=${CARGO_TARGET_DIR:-$root/target}/debug
fi
listen=${ROLLBACK_BOT_LISTEN:-127.0.0.1:8080}
admin_listen=${ROLLBACK_BOT_ADMIN_LISTEN:-127.0.0.1:9090}

state=${ROLLBACK_BOT_LOCAL_STATE:-$root/.testenv/local}
cleanup() {
  trap - EXIT INT TERM
  # Tear down everything, whatever failed: Ctrl-C reaches the whole process group, so the
  # simulator and the sandbox may be gone already (a failed kill must not stop the rest).
  set +e
  local process
  for process in simulator sandbox announce; do
    [ -f "$state/$process.pid" ] && kill "$(cat "$state/$process.pid")" 2>/dev/null
    rm -f "$state/$process.pid"
  done
  bash scripts/prometheus.sh down "$state" >/dev/null 2>&1 || true
  bash scripts/cluster.sh down "$state" >/dev/null 2>&1 || true
  bash scripts/postgres.sh down "$state" >/dev/null 2>&1 || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# What a background process printed after `prefix` at the start of a line in `file` (its
# address), waiting up to 5 s for it.
announced() {
  local file=$1 prefix=$2
  for _ in $(seq 1 50); do
    grep -q "^$prefix" "$file" 2>/dev/null && break
    sleep 0.1
  done
  sed -n "s|^$prefix||p" "$file"
}

bash scripts/postgres.sh up "$state"
# shellcheck disable=SC1091
. "$state/pg.env"
bash scripts/cluster.sh up "$state"
# shellcheck disable=SC1091
. "$state/env"
bash scripts/prometheus.sh up "$state"
# shellcheck disable=SC1091
. "$state/prom.env"

kubectl=("$ROLLBACK_BOT_TEST_KUBECTL" --kubeconfig "$ROLLBACK_BOT_TEST_KUBECONFIG_ADMIN")
"${kubectl[@]}" create namespace demo >/dev/null
"${kubectl[@]}" -n demo create rolebinding rollback-bot-executor \
  --clusterrole=rollback-bot-executor --serviceaccount=rollback-bot:rollback-bot >/dev/null
for _ in $(seq 1 50); do
  "${kubectl[@]}" -n demo get serviceaccount default >/dev/null 2>&1 && break
  sleep 0.2
done
echo "run-local: creating deployment demo/demo-api with 3 revisions..."
"${kubectl[@]}" -n demo create deployment demo-api --image=registry.local/demo-api:1.0.0 --replicas=3 >/dev/null
"${kubectl[@]}" -n demo annotate deployment demo-api kubernetes.io/change-cause="deploy 1.0.0" >/dev/null
"${kubectl[@]}" -n demo rollout status deployment demo-api --timeout=60s >/dev/null
for v in 1.1.0 1.2.0; do
  "${kubectl[@]}" -n demo set image deployment/demo-api demo-api="registry.local/demo-api:$v" >/dev/null
  "${kubectl[@]}" -n demo annotate --overwrite deployment demo-api kubernetes.io/change-cause="deploy $v" >/dev/null
  "${kubectl[@]}" -n demo rollout status deployment demo-api --timeout=60s >/dev/null
done
"${kubectl[@]}" -n demo rollout history deployment demo-api

# The service behind demo-api (kwok pods run nothing): metrics and /health that follow the
# Deployment's image tag (`:slow`, `:errors`, `:unhealthy`, `:idle`), scraped by Prometheus.
KUBECONFIG="$ROLLBACK_BOT_TEST_KUBECONFIG_ADMIN" "$bin/service_simulator" \
  --namespace demo --deployment demo-api >"$state/simulator.out" 2>"$state/simulator.log" &
echo $! >"$state/simulator.pid"
simulator=$(announced "$state/simulator.out" 'listening on http://')
echo "[{\"targets\": [\"$simulator\"]}]" >"$ROLLBACK_BOT_TEST_PROMETHEUS_SD/demo-api.json"
echo "run-local: service simulator for demo-api on http://$simulator (try:"
echo "           kubectl -n demo set image deployment/demo-api demo-api=registry.local/demo-api:slow)"

# The recovery check compares P99 with its value when the bad revision rolled out (the
# ReplicaSet's creation, a timestamp truncated to the second): wait until Prometheus has that
# healthy history (the default P99 query, src/domain/recovery.rs) already 10 s in the past, so a bad
# deploy right after "Try it" has a baseline. Measured: about 15 s after the target appears.
p99_query='histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{service="demo-api",namespace="demo"}[10m])))'
waited=$(date +%s)
until curl -sfG "$ROLLBACK_BOT_TEST_PROMETHEUS_URL/api/v1/query" --data-urlencode "query=$p99_query" \
  --data-urlencode "time=$(($(date +%s) - 10))" |
  grep -Eq '"value":\[[0-9.]+,"[0-9.]+(e-?[0-9]+)?"\]'; do
  if [ $(($(date +%s) - waited)) -ge 90 ]; then
    echo "run-local: Prometheus has no P99 of demo-api after 90 s (log: $ROLLBACK_BOT_TEST_PROMETHEUS_DIR/prometheus/prometheus.log," >&2
    echo "           simulator: $state/simulator.log)" >&2
    exit 1
  fi
  sleep 0.5
done
echo "run-local: Prometheus has demo-api's healthy baseline (after $(($(date +%s) - waited)) s)"

lead=${ROLLBACK_BOT_LEAD:-U0LOCALLEAD}
second_lead=U0LOCALLEAD2
dba=U0LOCALDBA
channel=${ROLLBACK_BOT_CHANNEL:-C0LOCALINCIDENT}
transport=http
[ -n "${SLACK_APP_TOKEN:-}" ] && transport=socket_mode
origin=""
sandbox_url=""
if [ -z "${SLACK_BOT_TOKEN:-}" ]; then
  # No workspace: the sandbox plays Slack, with its own local tokens.
  transport=${ROLLBACK_BOT_SANDBOX_TRANSPORT:-http}
  export SLACK_BOT_TOKEN=xoxb-sandbox SLACK_SIGNING_SECRET=sandbox-signing-secret
  export SLACK_APP_TOKEN=xapp-sandbox
  "$bin/slack_sandbox" --listen "${ROLLBACK_BOT_SANDBOX_LISTEN:-127.0.0.1:3000}" \
    --transport "${transport//_/-}" --bot-url "http://$listen" --channel "$channel" \
    --lead "$lead" --second-lead "$second_lead" --dba "$dba" \
    >"$state/sandbox.out" 2>"$state/sandbox.log" &
  echo $! >"$state/sandbox.pid"
  sandbox_url=$(announced "$state/sandbox.out" 'sandbox on ')
  [ -n "$sandbox_url" ] || { echo "run-local: the Slack sandbox did not start:" >&2; cat "$state/sandbox.log" >&2; exit 1; }
  export SLACK_API_URL="$sandbox_url/api/"
  # The sandbox's requests come from this workspace and app (crates/slack-sandbox/src/web_api.rs).
  origin=$'team_id = "T0EXAMPLE1"\napp_id = "A0ROLLBACK"'
fi
if [ "$transport" = http ] && [ -z "${SLACK_SIGNING_SECRET:-}" ]; then
  # serve refuses to start without it; locally, without Slack, a placeholder will do (no real
  # Slack request verifies against it).
  echo "run-local: SLACK_SIGNING_SECRET is not set: using a local placeholder"
  export SLACK_SIGNING_SECRET=local-placeholder-not-slack
fi
cat >"$state/rollback-bot.toml" <<TOML
[server]
listen = "$listen"
admin_listen = "$admin_listen"
transport = "$transport"

[slack]
incident_channels = ["$channel"]
lead_user_ids = ["$lead", "$second_lead"]
dba_user_ids = ["$dba"]
$origin

[clusters.local]
kubeconfig = "$ROLLBACK_BOT_TEST_KUBECONFIG"
prometheus_url = "$ROLLBACK_BOT_TEST_PROMETHEUS_URL"

[services.demo-api]
cluster = "local"
namespace = "demo"

[services.demo-api.recovery]
health_url = "http://$simulator/health"
interval = "5s"
window = "2m"
TOML
export ROLLBACK_BOT_CONFIG="$state/rollback-bot.toml" DATABASE_URL
echo "run-local: config $ROLLBACK_BOT_CONFIG (lead: $lead, channel: $channel; set ROLLBACK_BOT_LEAD"
echo "           to your Slack user id and ROLLBACK_BOT_CHANNEL to your incident channel's id)"
echo "run-local: serving on http://$listen, probes and metrics on http://$admin_listen"
echo "           (Ctrl-C stops and tears everything down)"
if [ -n "$sandbox_url" ]; then
  # "Try it" once the bot is ready (/readyz), so the first command is not lost; the bot
  # itself stays in the foreground, where Ctrl-C reaches it.
  (
    for _ in $(seq 1 300); do
      if curl -sf -o /dev/null "http://$admin_listen/readyz"; then
        echo
        echo "  Try it: open $sandbox_url in a browser (Slack sandbox, $transport transport),"
        echo "  run make bad-deploy in another shell, then as Riley type /rollback demo-api INC-1"
        echo "  and approve as Lee (README, \"Try it\")"
        echo
        exit 0
      fi
      sleep 0.2
    done
    echo "run-local: the bot is not ready after 60 s (http://$admin_listen/readyz)" >&2
  ) &
  echo $! >"$state/announce.pid"
fi
"$bin/rollback-bot" serve
