#!/usr/bin/env bash
# Builds a real kube-apiserver and etcd from the Go module proxy into a cache folder
# outside the repository, keyed by version, and prints that folder; on Linux also the
# node binaries of scripts/clusterbins.sh, in the same build (TRELLIS_TESTENV_NODE_BINS=false
# skips them). A second call with kube-apiserver and etcd present returns at once.
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
log "building kube-apiserver $K8S_VERSION and etcd $ETCD_VERSION (on Linux also $k8s_node_bins) into $dir (cold: 15-25 minutes)"

bins="kube-apiserver etcd"
# On Linux the node binaries of `make cluster` and the e2e are built in the same go
# build: they share most packages with kube-apiserver, and built later on their own
# they would compile them again.
if [ "$(uname -s)" = Linux ] && [ "${TRELLIS_TESTENV_NODE_BINS:-true}" = true ]; then
  for b in $k8s_node_bins; do [ -x "$dir/$b" ] || bins="$bins $b"; done
fi
# shellcheck disable=SC2086
k8s_build "$dir" $bins
log "built in $(( $(date +%s) - start ))s"
echo "$dir"
