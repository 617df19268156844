#!/usr/bin/env bash
# Builds kubelet, kube-controller-manager, kube-scheduler and kube-proxy from the Go module
# proxy into the test environment's cache folder (beside kube-apiserver and etcd, see
# scripts/testenv.sh), in the same kind of throw-away wrapper module, and prints that folder.
# A second call with the binaries present returns at once.
#
#   scripts/clusterbins.sh            build if missing, print the folder
#   scripts/clusterbins.sh --path     print the folder only (no build)
#
# Environment: TRELLIS_CACHE (default ${XDG_CACHE_HOME:-$HOME/.cache}/trellis).
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-v1.37.2}
STAGING_VERSION=${STAGING_VERSION:-v0.37.2}
ETCD_VERSION=${ETCD_VERSION:-v3.7.3}

cache_root=${TRELLIS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/trellis}
dir="$cache_root/testenv/k8s-$K8S_VERSION-etcd-$ETCD_VERSION"
bins="kubelet kube-controller-manager kube-scheduler kube-proxy"

if [ "${1:-}" = "--path" ]; then
  echo "$dir"
  exit 0
fi

missing=""
for b in $bins; do [ -x "$dir/$b" ] || missing="$missing $b"; done
if [ -z "$missing" ]; then
  echo "$dir"
  exit 0
fi

log() { echo "clusterbins: $*" >&2; }
start=$(date +%s)
log "building$missing $K8S_VERSION into $dir (cold: 10-20 minutes, warm build cache: ~6)"

mkdir -p "$dir"
work=$(mktemp -d "$cache_root/testenv/nodebuild.XXXXXX")
trap 'rm -rf "$work"' EXIT

export GOWORK=off GOFLAGS=-mod=mod CGO_ENABLED=0

# Same wrapper as scripts/testenv.sh: k8s.io/kubernetes requires its staging modules at
# v0.0.0 with replaces to ./staging; replace each with its published version.
k8s_mod=$(cd "$work" && go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",*$/\1/p')
[ -f "$k8s_mod" ] || { log "cannot locate go.mod of k8s.io/kubernetes@$K8S_VERSION"; exit 1; }
staging=$(grep -E '^[[:space:]]*k8s\.io/[a-z0-9-]+ v0\.0\.0([[:space:]]|$)' "$k8s_mod" | awk '{print $1}' | sort -u)
[ -n "$staging" ] || { log "no staging modules found in $k8s_mod"; exit 1; }

{
  echo "module trellis.local/clusterbins-build"
  echo
  echo "go 1.26"
  echo
  echo "require k8s.io/kubernetes $K8S_VERSION"
  echo
  for m in $staging; do echo "replace $m => $m $STAGING_VERSION"; done
} >"$work/go.mod"
cat >"$work/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
GO

cd "$work"
go mod tidy -e >/dev/null 2>"$work/tidy.log" || { cat "$work/tidy.log" >&2; exit 1; }

minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean"
for b in $missing; do
  go build -trimpath -ldflags "$ldflags" -o "$work/$b" "k8s.io/kubernetes/cmd/$b"
done
# Move into place only when all built, so a broken build never looks cached.
for b in $missing; do mv "$work/$b" "$dir/$b"; done
log "built in $(( $(date +%s) - start ))s"
echo "$dir"
