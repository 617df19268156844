#!/usr/bin/env bash
# Builds the real gardener-resource-manager from the Go module proxy into a cache
# folder beside the test environment (scripts/testenv.sh), keyed by version, and
# prints the binary's path. A second call with the binary present returns at once.
#
#   scripts/gardener-rm.sh            build if missing, print the binary's path
#   scripts/gardener-rm.sh --path     print the binary's path only (no build)
#
# The module zip of github.com/gardener/gardener lacks its nested module pkg/apis
# (go.mod: `replace github.com/gardener/gardener/pkg/apis => ./pkg/apis`). The
# script copies the module's source, puts pkg/apis back from the module proxy at the
# same tag and builds with gardener's own go.mod and go.sum, i.e. exactly the
# dependency versions of the release.
#
# Environment: TRELLIS_CACHE (default ${XDG_CACHE_HOME:-$HOME/.cache}/trellis),
# GARDENER_VERSION (default v1.149.3).
set -euo pipefail

GARDENER_VERSION=${GARDENER_VERSION:-v1.149.3}

cache_root=${TRELLIS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/trellis}
dir="$cache_root/testenv/gardener-$GARDENER_VERSION"
bin="$dir/gardener-resource-manager"

if [ "${1:-}" = "--path" ]; then
  echo "$bin"
  exit 0
fi

if [ -x "$bin" ]; then
  echo "$bin"
  exit 0
fi

log() { echo "gardener-rm: $*" >&2; }
start=$(date +%s)
log "building gardener-resource-manager $GARDENER_VERSION into $dir (cold: 5-15 minutes)"

mkdir -p "$dir" "$cache_root/testenv"
work=$(mktemp -d "$cache_root/testenv/gardener-build.XXXXXX")
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT

export GOWORK=off GOFLAGS=-mod=mod CGO_ENABLED=0

moddir() { (cd "$work" && go mod download -json "$1" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p'); }
src=$(moddir "github.com/gardener/gardener@$GARDENER_VERSION")
apis=$(moddir "github.com/gardener/gardener/pkg/apis@$GARDENER_VERSION")
[ -d "$src" ] || { log "cannot download github.com/gardener/gardener@$GARDENER_VERSION"; exit 1; }
[ -d "$apis" ] || { log "cannot download github.com/gardener/gardener/pkg/apis@$GARDENER_VERSION"; exit 1; }

# Only what the build needs: go.mod/go.sum, the packages and the nested module.
mkdir -p "$work/src"
cp -r "$src/." "$work/src/"
chmod -R u+w "$work/src"
rm -rf "$work/src/pkg/apis"
cp -r "$apis" "$work/src/pkg/apis"
chmod -R u+w "$work/src/pkg/apis"

cd "$work/src"
# The version as gardener's hack/get-build-ld-flags.sh sets it (k8s.io/component-base).
major=${GARDENER_VERSION#v}; minor=${major#*.}; major=${major%%.*}; minor=${minor%%.*}
vpkg=k8s.io/component-base/version
ldflags="-s -w -X $vpkg.gitVersion=$GARDENER_VERSION -X $vpkg.gitMajor=$major -X $vpkg.gitMinor=$minor -X $vpkg.gitTreeState=clean -X $vpkg/verflag.programName=Gardener"
go build -trimpath -ldflags "$ldflags" -o "$work/gardener-resource-manager" ./cmd/gardener-resource-manager

# Move into place only when built, so a broken build never looks cached.
mv "$work/gardener-resource-manager" "$bin"
log "built in $(( $(date +%s) - start ))s"
echo "$bin"
