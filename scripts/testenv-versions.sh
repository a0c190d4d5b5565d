# Pinned versions of the test control plane and where its binaries are cached (sourced).
K8S_VERSION=1.36.3
ETCD_VERSION=3.6.16
KWOK_VERSION=v0.8.0
ROLLBACK_BOT_CACHE=${ROLLBACK_BOT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/rollback-bot}
TESTENV_BIN="$ROLLBACK_BOT_CACHE/k8s-v$K8S_VERSION-etcd-$ETCD_VERSION-kwok-$KWOK_VERSION/bin"
# Argo CD (application-controller + repo-server) for the GitOps tests, built by
# scripts/build-argocd.sh from testenv/argocd with its own Go toolchain (Argo CD 3.6 needs Go 1.27).
ARGOCD_VERSION=3.6.1
ARGOCD_GO_TOOLCHAIN=go1.27.4
ARGOCD_BIN="$ROLLBACK_BOT_CACHE/argocd-v$ARGOCD_VERSION-$ARGOCD_GO_TOOLCHAIN/bin"
