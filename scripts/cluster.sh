#!/usr/bin/env bash
# Starts or stops the local Kubernetes control plane the integration tests run against.
#
#   scripts/cluster.sh up DIR     start a kwokctl cluster whose state lives in DIR
#   scripts/cluster.sh down DIR   delete it and check that none of its processes survive
#
# The cluster runs real kube-apiserver, kube-controller-manager, kube-scheduler and etcd
# (built once by scripts/build-testenv.sh) with kwok playing the kubelets, under
# `kwokctl --runtime binary`; nothing is downloaded at run time. Stages in testenv/kwok/
# make every pod Ready except pods with an image tagged `crashloop`, which crash-loop;
# pods of an image tagged `flaky` become Ready, then restart every few seconds.
#
# `up` writes into DIR:
#   kubeconfig-admin.yaml     cluster admin (test fixtures, kubectl comparisons)
#   kubeconfig-executor.yaml  token of ServiceAccount rollback-bot/rollback-bot, which has
#                             only config/kubernetes/base/rbac.yaml's roles: the executor's,
#                             bound per test namespace, and the lock-policy reader
# The cluster has the deploy lock's admission policy (config/kubernetes/base/deploy-lock.yaml),
# as a production cluster running the bot should: the bot's cards say "locked" only where it
# is enforced.
#   env                       exports ROLLBACK_BOT_TEST_KUBECONFIG_ADMIN,
#                             ROLLBACK_BOT_TEST_KUBECONFIG (executor), ROLLBACK_BOT_TEST_KUBECTL
# The cluster name is derived from DIR, so runs in different directories do not clash;
# kwokctl gives every component a free port.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/testenv-versions.sh
. "$here/scripts/testenv-versions.sh"

usage() {
  echo "usage: $0 up|down DIR" >&2
  exit 2
}
[ $# -eq 2 ] || usage
action=$1
mkdir -p "$2"
dir=$(cd "$2" && pwd)
name="rbt-$(printf '%s' "$dir" | sha256sum | cut -c1-10)"

export KWOK_WORKDIR="$dir/kwok"
# kwokctl polls the apiserver with kubectl and would try to download one if none is found.
export PATH="$TESTENV_BIN:$PATH"
export KWOK_KUBECTL_BINARY="$TESTENV_BIN/kubectl"
kubectl=("$TESTENV_BIN/kubectl" --kubeconfig "$dir/kubeconfig-admin.yaml")

cluster_exists() {
  [ -d "$KWOK_WORKDIR/clusters/$name" ]
}

# PIDs of processes started for this cluster: their command lines name its directory.
cluster_pids() {
  pgrep -f -- "$KWOK_WORKDIR/clusters/$name/" || true
}

down() {
  if cluster_exists; then
    kwokctl delete cluster --name "$name" >"$dir/kwokctl-delete.log" 2>&1 || {
      cat "$dir/kwokctl-delete.log" >&2
      echo "cluster.sh: kwokctl delete cluster failed; cleaning up by hand" >&2
    }
  fi
  local pids
  pids=$(cluster_pids)
  if [ -n "$pids" ]; then
    echo "cluster.sh: stopping leftover processes of $name: $pids" >&2
    # shellcheck disable=SC2086 # one PID per word
    kill $pids 2>/dev/null || true
    sleep 2
    pids=$(cluster_pids)
    # shellcheck disable=SC2086
    [ -z "$pids" ] || kill -9 $pids 2>/dev/null || true
  fi
  pids=$(cluster_pids)
  if [ -n "$pids" ]; then
    echo "cluster.sh: processes of $name still running: $pids" >&2
    exit 1
  fi
  rm -rf "$KWOK_WORKDIR" "$dir/kubeconfig-admin.yaml" "$dir/kubeconfig-executor.yaml" "$dir/env" \
    "$dir/kwok-config.yaml" "$dir/kwokctl-create.log" "$dir/kwokctl-delete.log"
  rmdir "$dir" 2>/dev/null || true
  echo "cluster.sh: cluster $name deleted, no processes left"
}

up() {
  local bin
  for bin in kube-apiserver kube-controller-manager kube-scheduler kubectl etcd kwok kwokctl; do
    if [ ! -x "$TESTENV_BIN/$bin" ]; then
      echo "cluster.sh: $TESTENV_BIN/$bin is missing; run scripts/build-testenv.sh first" >&2
      exit 1
    fi
  done
  # A cluster left over from an aborted run in the same DIR is replaced, not reused.
  if cluster_exists || [ -n "$(cluster_pids)" ]; then
    echo "cluster.sh: removing a previous cluster $name" >&2
    down >/dev/null
    mkdir -p "$dir"
  fi

  local started config
  started=$(date +%s%N)
  # Custom stages replace all of kwok's defaults, so the set below is complete.
  config="$dir/kwok-config.yaml"
  : >"$config"
  for f in "$here"/testenv/kwok/stages/*.yaml; do
    { cat "$f"; echo "---"; } >>"$config"
  done
  # Every container's log (`kubectl logs`, `--previous` for the crashed one before it): the
  # escalation quotes a crash-looping pod's previous log. It names a password, which the
  # bot must redact, and Slack markup, which it must escape.
  cat >>"$config" <<EOF
kind: ClusterLogs
apiVersion: kwok.x-k8s.io/v1alpha1
metadata:
  name: container-logs
spec:
  logs:
  - logsFile: $here/testenv/kwok/logs/current.log
    previousLogsFile: $here/testenv/kwok/logs/previous.log
EOF

  if ! kwokctl create cluster --name "$name" --runtime binary \
    --kube-apiserver-binary "$TESTENV_BIN/kube-apiserver" \
    --kube-controller-manager-binary "$TESTENV_BIN/kube-controller-manager" \
    --kube-scheduler-binary "$TESTENV_BIN/kube-scheduler" \
    --etcd-binary "$TESTENV_BIN/etcd" \
    --kwok-controller-binary "$TESTENV_BIN/kwok" \
    --secure-port --kube-authorization \
    --config "$config" \
    --disable-qps-limits --wait 3m >"$dir/kwokctl-create.log" 2>&1; then
    cat "$dir/kwokctl-create.log" >&2
    echo "cluster.sh: kwokctl create cluster failed (component logs: $KWOK_WORKDIR/clusters/$name/logs)" >&2
    down >/dev/null 2>&1 || true
    exit 1
  fi
  cp "$KWOK_WORKDIR/clusters/$name/kubeconfig.yaml" "$dir/kubeconfig-admin.yaml"

  local i
  for i in 0 1; do
    "${kubectl[@]}" apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-$i
  annotations: {kwok.x-k8s.io/node: fake}
  labels: {type: kwok, kubernetes.io/hostname: kwok-node-$i, kubernetes.io/os: linux}
EOF
  done
  "${kubectl[@]}" wait --for=condition=Ready node --all --timeout=60s >/dev/null

  "${kubectl[@]}" apply -f "$here/config/kubernetes/base/rbac.yaml" >/dev/null
  "${kubectl[@]}" apply -f "$here/config/kubernetes/base/deploy-lock.yaml" >/dev/null
  local token server ca
  token=$("${kubectl[@]}" -n rollback-bot create token rollback-bot --duration=24h)
  server=$("${kubectl[@]}" config view --raw --minify -o jsonpath='{.clusters[0].cluster.server}')
  ca=$("${kubectl[@]}" config view --raw --minify -o jsonpath='{.clusters[0].cluster.certificate-authority-data}')
  if [ -z "$ca" ]; then
    ca=$(base64 -w0 <"$("${kubectl[@]}" config view --raw --minify -o jsonpath='{.clusters[0].cluster.certificate-authority}')")
  fi
  umask 077
  cat >"$dir/kubeconfig-executor.yaml" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: $name
  cluster:
    server: $server
    certificate-authority-data: $ca
users:
- name: rollback-bot
  user:
    token: $token
contexts:
- name: rollback-bot@$name
  context: {cluster: $name, user: rollback-bot}
current-context: rollback-bot@$name
EOF
  local who
  who=$("$TESTENV_BIN/kubectl" --kubeconfig "$dir/kubeconfig-executor.yaml" auth whoami -o jsonpath='{.status.userInfo.username}')
  if [ "$who" != "system:serviceaccount:rollback-bot:rollback-bot" ]; then
    echo "cluster.sh: executor kubeconfig authenticates as '$who'" >&2
    exit 1
  fi

  cat >"$dir/env" <<EOF
export ROLLBACK_BOT_TEST_KUBECONFIG_ADMIN=$dir/kubeconfig-admin.yaml
export ROLLBACK_BOT_TEST_KUBECONFIG=$dir/kubeconfig-executor.yaml
export ROLLBACK_BOT_TEST_KUBECTL=$TESTENV_BIN/kubectl
EOF
  local ms=$((($(date +%s%N) - started) / 1000000))
  echo "cluster.sh: cluster $name up in $((ms / 1000)).$(printf '%03d' $((ms % 1000)))s ($server); . $dir/env"
}

case "$action" in
  up) up ;;
  down) down ;;
  *) usage ;;
esac
