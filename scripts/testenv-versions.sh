# Pinned versions of the test control plane and where its binaries are cached (sourced).
K8S_VERSION=1.36.3
ETCD_VERSION=3.6.16
KWOK_VERSION=v0.8.0
ROLLBACK_BOT_CACHE=${ROLLBACK_BOT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/rollback-bot}
TESTENV_BIN="$ROLLBACK_BOT_CACHE/k8s-v$K8S_VERSION-etcd-$ETCD_VERSION-kwok-$KWOK_VERSION/bin"
