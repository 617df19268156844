#!/usr/bin/env bash
# Builds a real kube-apiserver and etcd from the Go module proxy into a cache folder
# outside the repository, keyed by version, and prints that folder. A second call with
# the binaries present returns at once.
#
#   scripts/testenv.sh            build if missing, print the folder
#   scripts/testenv.sh --path     print the folder only (no build)
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

if [ "${1:-}" = "--path" ]; then
  echo "$dir"
  exit 0
fi

if [ -x "$dir/kube-apiserver" ] && [ -x "$dir/etcd" ]; then
  echo "$dir"
  exit 0
fi

log() { echo "testenv: $*" >&2; }
start=$(date +%s)
log "building kube-apiserver $K8S_VERSION and etcd $ETCD_VERSION into $dir (cold: 10-20 minutes)"

mkdir -p "$dir"
work=$(mktemp -d "$cache_root/testenv/build.XXXXXX")
trap 'rm -rf "$work"' EXIT

export GOWORK=off GOFLAGS=-mod=mod CGO_ENABLED=0

k8s_wrapper_write "$work" trellis.local/testenv-build "k8s.io/kubernetes $K8S_VERSION" "go.etcd.io/etcd/server/v3 $ETCD_VERSION" -- \
  go.etcd.io/etcd/server/v3 \
  k8s.io/kubernetes/cmd/kube-apiserver
k8s_wrapper_tidy "$work"
cd "$work"
ldflags=$(k8s_ldflags)
go build -trimpath -ldflags "$ldflags" -o "$work/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver
go build -trimpath -ldflags "-s -w" -o "$work/etcd" go.etcd.io/etcd/server/v3

# Move into place only when both built, so a broken build never looks cached.
mv "$work/etcd" "$dir/etcd"
mv "$work/kube-apiserver" "$dir/kube-apiserver"
log "built in $(( $(date +%s) - start ))s"
echo "$dir"
