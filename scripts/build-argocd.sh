#!/usr/bin/env bash
# Builds Argo CD's application-controller and repo-server (one binary, argocd-mini) from Go
# modules, once, for the GitOps tests.
#
# The pinned wrapper module testenv/argocd requires github.com/argoproj/argo-cd/v3 and copies
# its replace block (see testenv/argocd/go.mod for the one replace it must not copy). Argo CD
# 3.6 needs Go 1.27: GOTOOLCHAIN fetches that toolchain from the module proxy like a module, so
# only some Go (>= 1.21) has to be installed. The binary, the support scripts Argo CD's image
# puts on PATH, and the CRDs and base config land in $ROLLBACK_BOT_CACHE (outside the tree); a
# run whose binary already reports the pinned version and was built from the current main.go
# and go.sum builds nothing (~6 min cold on 2 cores, seconds warm).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/testenv-versions.sh
. "$here/scripts/testenv-versions.sh"

if ! command -v go >/dev/null 2>&1; then
  echo "error: Go is not installed. Argo CD for the GitOps tests is built from Go modules;" >&2
  echo "       install Go >= 1.21 (it fetches $ARGOCD_GO_TOOLCHAIN itself) and run this again." >&2
  exit 1
fi

export GOTOOLCHAIN=$ARGOCD_GO_TOOLCHAIN CGO_ENABLED=0 GOFLAGS=-modcacherw
src="$here/testenv/argocd"
stamp=$(cat "$src/main.go" "$src/go.mod" "$src/go.sum" | sha256sum | cut -c1-16)
mkdir -p "$ARGOCD_BIN"

if [ -x "$ARGOCD_BIN/argocd-mini" ] && [ "$(cat "$ARGOCD_BIN/.stamp" 2>/dev/null)" = "$stamp" ]; then
  echo "testenv: Argo CD v$ARGOCD_VERSION cached in $ARGOCD_BIN"
else
  echo "testenv: building Argo CD v$ARGOCD_VERSION controller + repo-server (cold build ~6 min on 2 cores)..."
  p=github.com/argoproj/argo-cd/v3/common
  ldflags="-s -w -X $p.version=$ARGOCD_VERSION -X $p.gitTag=v$ARGOCD_VERSION -X $p.gitTreeState=clean -X $p.kubectlVersion=v0.37.0"
  (cd "$src" && go build -p 2 -trimpath -ldflags "$ldflags" -o "$ARGOCD_BIN/argocd-mini.new" .)
  mv "$ARGOCD_BIN/argocd-mini.new" "$ARGOCD_BIN/argocd-mini"
  echo "$stamp" >"$ARGOCD_BIN/.stamp"
fi

# The module's own files the test environment needs: the repo-server execs
# git-verify-wrapper.sh from PATH even with GPG off; the CRDs and the base config maps.
mod=$(cd "$src" && go list -m -f '{{.Dir}}' github.com/argoproj/argo-cd/v3)
share="$ARGOCD_BIN/../share"
if [ ! -f "$share/.complete" ]; then
  mkdir -p "$share/crds" "$share/config"
  install -m 0755 "$mod/hack/git-verify-wrapper.sh" "$mod/hack/gpg-wrapper.sh" "$ARGOCD_BIN/"
  install -m 0644 "$mod/manifests/crds/application-crd.yaml" "$mod/manifests/crds/appproject-crd.yaml" "$share/crds/"
  install -m 0644 "$mod"/manifests/base/config/*.yaml "$share/config/"
  touch "$share/.complete"
fi
