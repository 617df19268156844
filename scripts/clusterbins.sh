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
# shellcheck source=scripts/lib/wrapper.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/wrapper.sh"

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

k8s_wrapper_write "$work" trellis.local/clusterbins-build "k8s.io/kubernetes $K8S_VERSION" -- \
  k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kube-proxy \
  k8s.io/kubernetes/cmd/kube-scheduler \
  k8s.io/kubernetes/cmd/kubelet
k8s_wrapper_tidy "$work"
cd "$work"
ldflags=$(k8s_ldflags)
for b in $missing; do
  go build -trimpath -ldflags "$ldflags" -o "$work/$b" "k8s.io/kubernetes/cmd/$b"
done
# Move into place only when all built, so a broken build never looks cached.
for b in $missing; do mv "$work/$b" "$dir/$b"; done
log "built in $(( $(date +%s) - start ))s"
echo "$dir"
