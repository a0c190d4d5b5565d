#!/usr/bin/env bash
# A throw-away Prometheus for recovery-validation tests and local runs.
#
#   scripts/prometheus.sh up DIR     start Prometheus on a free loopback port with data in
#                                    DIR/prometheus, write DIR/prom.env
#   scripts/prometheus.sh down DIR   stop it and remove DIR/prometheus
#   scripts/prometheus.sh stop DIR   stop it but keep its data and config (fault tests)
#   scripts/prometheus.sh start DIR  start it again on the same port after `stop`
#
# Uses Debian's `prometheus` package, installing it with apt-get when it is missing (its
# systemd unit is not used: Prometheus runs as a plain process). It scrapes every second, and
# its scrape targets come from file_sd: tests add a target at run time by writing a JSON file
# into $ROLLBACK_BOT_TEST_PROMETHEUS_SD (Prometheus re-reads the directory within seconds).
#
# DIR/prom.env exports
#   ROLLBACK_BOT_TEST_PROMETHEUS_URL  http://127.0.0.1:PORT
#   ROLLBACK_BOT_TEST_PROMETHEUS_SD   the file_sd directory (write <name>.json there)
#   ROLLBACK_BOT_TEST_PROMETHEUS_DIR  DIR (for `prometheus.sh stop|start DIR`)
set -euo pipefail

cmd=${1:?usage: prometheus.sh up|down|stop|start DIR}
dir=${2:?usage: prometheus.sh up|down|stop|start DIR}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
home="$dir/prometheus"

prometheus_bin() {
  if ! command -v prometheus >/dev/null 2>&1; then
    echo "prometheus: not installed; installing Debian's prometheus package..." >&2
    if [ "$(id -u)" -ne 0 ]; then
      echo "error: Prometheus is missing and installing it needs root: apt-get install prometheus" >&2
      exit 1
    fi
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >&2
  fi
  command -v prometheus
}

# shellcheck source=scripts/free-port.sh
. "$(dirname "$0")/free-port.sh"

start() {
  local bin port
  bin=$(prometheus_bin)
  port=$(cat "$home/port")
  # A short lookback makes a target that stopped reporting vanish from queries quickly
  # (2.42 has no per-query lookback; see docs/recovery.md).
  "$bin" --config.file="$home/prometheus.yml" --storage.tsdb.path="$home/data" \
    --web.listen-address="127.0.0.1:$port" --storage.tsdb.retention.time=1h \
    --query.lookback-delta=30s >"$home/prometheus.log" 2>&1 &
  echo $! >"$home/pid"
  for _ in $(seq 1 150); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null &&
      [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/-/ready")" = 200 ]; then
      return
    fi
    if ! kill -0 "$(cat "$home/pid")" 2>/dev/null; then
      cat "$home/prometheus.log" >&2
      echo "prometheus: exited during start-up" >&2
      exit 1
    fi
    sleep 0.1
  done
  echo "prometheus: not ready after 15s (log: $home/prometheus.log)" >&2
  exit 1
}

stop() {
  if [ -f "$home/pid" ]; then
    local pid
    pid=$(cat "$home/pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$home/pid"
  fi
}

case "$cmd" in
  up)
    stop
    rm -rf "$home"
    mkdir -p "$home/data" "$home/targets"
    free_port >"$home/port"
    # Alerting rules for the "no new alerts" check (tests/recovery_e2e.rs): only services in
    # namespaces named alerting-* have them, so no other test sees an alert.
    cat >"$home/rules.yml" <<'YAML'
groups:
- name: rollback-bot-tests
  rules:
  - alert: RollbackBotTestServerErrors
    expr: sum by (service, namespace) (increase(http_requests_total{namespace=~"alerting-.+",code=~"5.."}[10m])) > 0
    labels: {severity: page}
  - alert: RollbackBotTestScraped
    expr: sum by (service, namespace) (http_requests_total{namespace=~"alerting-.+"}) >= 0
    labels: {severity: info}
YAML
    cat >"$home/prometheus.yml" <<YAML
global: {scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}
rule_files: ['$home/rules.yml']
scrape_configs:
- job_name: services
  file_sd_configs:
  - files: ['$home/targets/*.json']
    refresh_interval: 1s
YAML
    start
    {
      echo "export ROLLBACK_BOT_TEST_PROMETHEUS_URL=http://127.0.0.1:$(cat "$home/port")"
      echo "export ROLLBACK_BOT_TEST_PROMETHEUS_SD=$home/targets"
      echo "export ROLLBACK_BOT_TEST_PROMETHEUS_DIR=$dir"
    } >"$dir/prom.env"
    echo "prometheus: $("$(prometheus_bin)" --version 2>&1 | head -n 1) on 127.0.0.1:$(cat "$home/port") (data in $home)"
    ;;
  down)
    stop
    rm -rf "$home" "$dir/prom.env"
    ;;
  stop)
    stop
    ;;
  start)
    start
    ;;
  *)
    echo "usage: prometheus.sh up|down|stop|start DIR" >&2
    exit 2
    ;;
esac
