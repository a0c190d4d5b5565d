#!/usr/bin/env bash
# A real Argo CD (application-controller + repo-server v3.6.1) against the local kwok cluster,
# for the GitOps tests (tests/argocd.rs) and local runs.
#
#   scripts/argocd.sh up DIR     DIR is a cluster's directory (`scripts/cluster.sh up DIR`):
#                                install the Argo CD CRDs, namespace `argocd` with its base
#                                config, the `default` AppProject and the bot's RBAC
#                                (config/kubernetes/argocd), start redis, the repo-server and
#                                the controller, write DIR/argocd.env. Already up: nothing.
#   scripts/argocd.sh down DIR   stop them and remove DIR/argocd (the cluster stays)
#
# The binary comes from scripts/build-argocd.sh (cached, built on first use); redis-server is
# Debian's, installed with apt-get when missing. ARGOCD_FAKE_IN_CLUSTER makes the in-cluster
# destination (https://kubernetes.default.svc) use $KUBECONFIG: the admin kubeconfig. Git
# repositories are local (`repoURL: file:///…`), so nothing leaves the machine.
#
# DIR/argocd.env exports
#   ROLLBACK_BOT_TEST_ARGOCD_NAMESPACE  argocd
#   ROLLBACK_BOT_TEST_ARGOCD_DIR        DIR/argocd (logs: *.log)
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/testenv-versions.sh
. "$here/scripts/testenv-versions.sh"
# shellcheck source=scripts/free-port.sh
. "$here/scripts/free-port.sh"

cmd=${1:?usage: argocd.sh up|down DIR}
dir=${2:?usage: argocd.sh up|down DIR}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
home="$dir/argocd"
kubeconfig="$dir/kubeconfig-admin.yaml"
kubectl=("$TESTENV_BIN/kubectl" --kubeconfig "$kubeconfig")

redis_bin() {
  if ! command -v redis-server >/dev/null 2>&1; then
    echo "argocd: redis-server is not installed; installing Debian's redis-server package..." >&2
    if [ "$(id -u)" -ne 0 ]; then
      echo "error: redis-server is missing and installing it needs root: apt-get install redis-server" >&2
      exit 1
    fi
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server >&2
  fi
  command -v redis-server
}

running() {
  local name
  for name in redis repo-server controller; do
    [ -f "$home/$name.pid" ] && kill -0 "$(cat "$home/$name.pid")" 2>/dev/null || return 1
  done
}

# Starts `$@` in the background with its output in $home/$name.log.
spawn() {
  local name=$1
  shift
  # Not fd 9: the daemons would hold the start-up lock for as long as they run.
  "$@" >"$home/$name.log" 2>&1 9>&- &
  echo $! >"$home/$name.pid"
}

# Waits until `name` answers on its metrics port; returns 1 if it exited during start-up.
wait_healthy() { # name, port
  for _ in $(seq 1 300); do
    if [ "$(curl -s "http://127.0.0.1:$2/healthz" 2>/dev/null)" = ok ]; then
      return
    fi
    if ! kill -0 "$(cat "$home/$1.pid")" 2>/dev/null; then
      tail -n 30 "$home/$1.log" >&2
      echo "argocd: $1 exited during start-up (log: $home/$1.log)" >&2
      return 1
    fi
    sleep 0.1
  done
  echo "argocd: $1 not healthy after 30s (log: $home/$1.log)" >&2
  exit 1
}

# Starts daemon `name` with `start` (a function that picks its ports with free_port and
# spawns it; $metrics is its metrics port) until it is healthy. A free port can be taken by
# another process between free_port and the daemon's bind: it then exits "address already in
# use", and is started again on other ports (three tries).
start_daemon() { # name, start
  local attempt
  for attempt in 1 2 3; do
    "$2"
    if wait_healthy "$1" "$metrics"; then
      return
    fi
    if ! grep -q "address already in use" "$home/$1.log"; then
      exit 1
    fi
    echo "argocd: $1's port was taken (try $attempt); starting it on other ports" >&2
  done
  exit 1
}

stop() {
  local name pid
  for name in controller repo-server redis; do
    [ -f "$home/$name.pid" ] || continue
    pid=$(cat "$home/$name.pid")
    kill "$pid" 2>/dev/null || true
    # The repo-server takes over a second to exit; wait so its port is free again.
    for _ in $(seq 1 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$home/$name.pid"
  done
}

install_objects() {
  local share="$ARGOCD_BIN/../share"
  "${kubectl[@]}" apply -f "$share/crds/application-crd.yaml" -f "$share/crds/appproject-crd.yaml" >/dev/null
  local crd
  for crd in applications.argoproj.io appprojects.argoproj.io; do
    # `kubectl wait` fails on a CRD whose status has no conditions yet: poll.
    for _ in $(seq 1 300); do
      [ "$("${kubectl[@]}" get crd "$crd" -o jsonpath='{.status.conditions[?(@.type=="Established")].status}')" = True ] && break
      sleep 0.1
    done
  done
  "${kubectl[@]}" create namespace argocd --dry-run=client -o yaml | "${kubectl[@]}" apply -f - >/dev/null
  "${kubectl[@]}" -n argocd apply -k "$share/config" >/dev/null
  # argocd-server would create the default project; it is not run here.
  "${kubectl[@]}" apply -f - >/dev/null <<'YAML'
apiVersion: argoproj.io/v1alpha1
kind: AppProject
metadata: {name: default, namespace: argocd}
spec:
  sourceRepos: ['*']
  destinations: [{server: '*', namespace: '*'}]
  clusterResourceWhitelist: [{group: '*', kind: '*'}]
YAML
  "${kubectl[@]}" apply -k "$here/config/kubernetes/argocd" >/dev/null
}

up() {
  if [ ! -f "$kubeconfig" ]; then
    echo "argocd: no cluster in $dir; run scripts/cluster.sh up $dir first" >&2
    exit 1
  fi
  if running; then
    echo "argocd: already running in $home"
    return
  fi
  stop
  rm -rf "$home"
  mkdir -p "$home"/{tls,ssh,gpg/keys,gpg/source,tmp,redis}
  bash "$here/scripts/build-argocd.sh" >&2
  local bin=$ARGOCD_BIN/argocd-mini redis
  redis=$(redis_bin)
  install_objects

  local redis_port
  redis_port=$(free_port)
  spawn redis "$redis" --save '' --appendonly no --bind 127.0.0.1 --port "$redis_port" --dir "$home/redis"
  start_repo_server() {
    repo_port=$(free_port)
    metrics=$(free_port)
    # git-verify-wrapper.sh must be on the repo-server's PATH even with GPG off.
    spawn repo-server env PATH="$ARGOCD_BIN:$PATH" ARGOCD_BINARY_NAME=argocd-repo-server \
      ARGOCD_FAKE_IN_CLUSTER=true ARGOCD_GPG_ENABLED=false ARGOCD_GNUPGHOME="$home/gpg/keys" \
      ARGOCD_GPG_DATA_PATH="$home/gpg/source" ARGOCD_TLS_DATA_PATH="$home/tls" \
      ARGOCD_SSH_DATA_PATH="$home/ssh" TMPDIR="$home/tmp" \
      "$bin" --loglevel info --address 127.0.0.1 --port "$repo_port" \
      --metrics-port "$metrics" --redis "127.0.0.1:$redis_port"
  }
  start_controller() {
    metrics=$(free_port)
    spawn controller env ARGOCD_BINARY_NAME=argocd-application-controller ARGOCD_FAKE_IN_CLUSTER=true \
      KUBECONFIG="$kubeconfig" HOSTNAME=argocd-application-controller-0 \
      ARGOCD_TLS_DATA_PATH="$home/tls" ARGOCD_SSH_DATA_PATH="$home/ssh" TMPDIR="$home/tmp" \
      "$bin" --loglevel info --namespace argocd --redis "127.0.0.1:$redis_port" \
      --repo-server "127.0.0.1:$repo_port" --metrics-port "$metrics" \
      --application-namespaces='' --server-side-diff-enabled=false --hydrator-enabled=false
  }
  local repo_port metrics
  start_daemon repo-server start_repo_server
  start_daemon controller start_controller
  {
    echo "export ROLLBACK_BOT_TEST_ARGOCD_NAMESPACE=argocd"
    echo "export ROLLBACK_BOT_TEST_ARGOCD_DIR=$home"
  } >"$dir/argocd.env"
  echo "argocd: Argo CD v$ARGOCD_VERSION controller + repo-server up (logs in $home); . $dir/argocd.env"
}

case "$cmd" in
  up)
    # Test binaries may ask at the same time: one starts it, the others find it running.
    exec 9>"$dir/argocd.lock"
    flock 9
    up
    ;;
  down)
    exec 9>"$dir/argocd.lock"
    flock 9
    stop
    rm -rf "$home" "$dir/argocd.env" "$dir/argocd.lock"
    ;;
  *)
    echo "usage: argocd.sh up|down DIR" >&2
    exit 2
    ;;
esac
