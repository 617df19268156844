#!/usr/bin/env bash
# Builds kubelet, kube-controller-manager, kube-scheduler and kube-proxy from the Go module
# proxy into the test environment's cache folder (beside kube-apiserver and etcd, see
# scripts/testenv.sh, which on Linux builds them already), through the same wrapper module
# (k8s_build in lib/wrapper.sh), and prints that folder.
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
bins=$k8s_node_bins

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
log "building$missing $K8S_VERSION into $dir (cold: 10-20 minutes; after scripts/testenv.sh has built kube-apiserver through the same module: a few)"

# shellcheck disable=SC2086
k8s_build "$dir" $missing
log "built in $(( $(date +%s) - start ))s"
echo "$dir"
