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

# k8s.io/kubernetes requires its staging modules at v0.0.0 with replace directives to
# ./staging; a wrapper module must replace each with its published version.
k8s_mod=$(cd "$work" && go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",*$/\1/p')
[ -f "$k8s_mod" ] || { log "cannot locate go.mod of k8s.io/kubernetes@$K8S_VERSION"; exit 1; }
staging=$(grep -E '^[[:space:]]*k8s\.io/[a-z0-9-]+ v0\.0\.0([[:space:]]|$)' "$k8s_mod" | awk '{print $1}' | sort -u)
[ -n "$staging" ] || { log "no staging modules found in $k8s_mod"; exit 1; }

{
  echo "module trellis.local/testenv-build"
  echo
  echo "go 1.26"
  echo
  echo "require ("
  echo "	k8s.io/kubernetes $K8S_VERSION"
  echo "	go.etcd.io/etcd/server/v3 $ETCD_VERSION"
  echo ")"
  echo
  for m in $staging; do echo "replace $m => $m $STAGING_VERSION"; done
} >"$work/go.mod"
cat >"$work/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
)
GO

cd "$work"
go mod tidy -e >/dev/null 2>"$work/tidy.log" || { cat "$work/tidy.log" >&2; exit 1; }

minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean"
go build -trimpath -ldflags "$ldflags" -o "$work/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver
go build -trimpath -ldflags "-s -w" -o "$work/etcd" go.etcd.io/etcd/server/v3

# Move into place only when both built, so a broken build never looks cached.
mv "$work/etcd" "$dir/etcd"
mv "$work/kube-apiserver" "$dir/kube-apiserver"
log "built in $(( $(date +%s) - start ))s"
echo "$dir"
