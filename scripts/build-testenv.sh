#!/usr/bin/env bash
# Builds the Kubernetes control plane used by the tests from Go modules, once.
#
# kube-apiserver, kube-controller-manager, kube-scheduler and kubectl come from the pinned
# wrapper module testenv/k8s, etcd from testenv/etcd, kwok and kwokctl from `go install`.
# Binaries land in $ROLLBACK_BOT_CACHE/bin (default ~/.cache/rollback-bot), outside the tree;
# a run whose binaries already report the pinned versions builds nothing.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/testenv-versions.sh
. "$here/scripts/testenv-versions.sh"

if ! command -v go >/dev/null 2>&1; then
  echo "error: Go is not installed. The Kubernetes test control plane is built from Go modules;" >&2
  echo "       install Go >= 1.26 (https://go.dev/doc/install) and run this again." >&2
  exit 1
fi
go_minor=$(go env GOVERSION | sed -n 's/^go1\.\([0-9]*\).*/\1/p')
if [ -z "$go_minor" ] || [ "$go_minor" -lt 26 ]; then
  echo "error: Go $(go env GOVERSION) is too old; Kubernetes $K8S_VERSION needs Go >= 1.26." >&2
  exit 1
fi

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-modcacherw
mkdir -p "$TESTENV_BIN"

has_version() { # binary, expected substring of its --version output
  [ -x "$TESTENV_BIN/$1" ] && "$TESTENV_BIN/$1" --version 2>/dev/null | grep -qF "$2"
}

if has_version kube-apiserver "v$K8S_VERSION" && has_version kube-controller-manager "v$K8S_VERSION" \
  && has_version kube-scheduler "v$K8S_VERSION" && [ -x "$TESTENV_BIN/kubectl" ]; then
  echo "testenv: Kubernetes v$K8S_VERSION binaries cached in $TESTENV_BIN"
else
  echo "testenv: building Kubernetes v$K8S_VERSION (cold build takes 20-40 min on 2 cores)..."
  minor=$(echo "$K8S_VERSION" | cut -d. -f2)
  ldflags="-s -w"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags="$ldflags -X $p.gitVersion=v$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
  done
  (cd "$here/testenv/k8s" && go build -p 2 -trimpath -ldflags "$ldflags" -o "$TESTENV_BIN/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl)
fi

if has_version etcd "$ETCD_VERSION"; then
  echo "testenv: etcd $ETCD_VERSION cached"
else
  echo "testenv: building etcd $ETCD_VERSION..."
  (cd "$here/testenv/etcd" && go build -trimpath -ldflags "-s -w" -o "$TESTENV_BIN/etcd" go.etcd.io/etcd/server/v3)
fi

if [ -x "$TESTENV_BIN/kwokctl" ] && "$TESTENV_BIN/kwokctl" --version 2>/dev/null | grep -qF "$KWOK_VERSION"; then
  echo "testenv: kwok $KWOK_VERSION cached"
else
  echo "testenv: installing kwok $KWOK_VERSION..."
  GOBIN="$TESTENV_BIN" go install -trimpath -ldflags "-s -w" \
    "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" "sigs.k8s.io/kwok/cmd/kwokctl@$KWOK_VERSION"
fi
