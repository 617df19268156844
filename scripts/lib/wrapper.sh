# shellcheck shell=bash
# The throw-away wrapper module that builds Kubernetes (and etcd) commands from the Go
# module proxy; sourced by scripts/testenv.sh and scripts/clusterbins.sh. A mistake here
# shows only on a cold machine (a warm one returns its cached binaries first), so check
# a change by diffing the go.mod and tools.go it writes into a temporary folder.
#
# The caller sets K8S_VERSION and STAGING_VERSION, defines log, and exports GOWORK=off
# GOFLAGS=-mod=mod CGO_ENABLED=0.

# k8s_wrapper_write DIR MODULE REQUIREMENT... -- IMPORT...
#   Writes DIR/go.mod (module MODULE requiring each "path version" REQUIREMENT) and
#   DIR/tools.go (a blank import of each IMPORT, the main packages to build).
#   k8s.io/kubernetes requires its staging modules at v0.0.0 with replace directives
#   to ./staging, which a dependent module does not inherit: the wrapper replaces each
#   module that k8s.io/kubernetes' own go.mod requires at v0.0.0 with its published
#   version $STAGING_VERSION (only those: some others are not published).
k8s_wrapper_write() {
  local dir=$1 module=$2 k8s_mod staging m
  shift 2
  local reqs=()
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do reqs+=("$1"); shift; done
  [ "${1:-}" = "--" ] || { log "k8s_wrapper_write: no -- before the imports"; return 1; }
  shift
  [ ${#reqs[@]} -gt 0 ] && [ $# -gt 0 ] || { log "k8s_wrapper_write: need requirements and imports"; return 1; }

  k8s_mod=$(cd "$dir" && go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",*$/\1/p')
  [ -f "$k8s_mod" ] || { log "cannot locate go.mod of k8s.io/kubernetes@$K8S_VERSION"; return 1; }
  staging=$(grep -E '^[[:space:]]*k8s\.io/[a-z0-9-]+ v0\.0\.0([[:space:]]|$)' "$k8s_mod" | awk '{print $1}' | sort -u)
  [ -n "$staging" ] || { log "no staging modules found in $k8s_mod"; return 1; }

  {
    echo "module $module"
    echo
    echo "go 1.26"
    echo
    if [ ${#reqs[@]} -eq 1 ]; then
      echo "require ${reqs[0]}"
    else
      echo "require ("
      for m in "${reqs[@]}"; do printf '\t%s\n' "$m"; done
      echo ")"
    fi
    echo
    for m in $staging; do echo "replace $m => $m $STAGING_VERSION"; done
  } >"$dir/go.mod"
  {
    echo "//go:build tools"
    echo
    echo "package tools"
    echo
    echo "import ("
    for m in "$@"; do printf '\t_ "%s"\n' "$m"; done
    echo ")"
  } >"$dir/tools.go"
}

# k8s_wrapper_tidy DIR: resolves the wrapper's full requirement graph (the tidy log is
# shown only when it fails).
k8s_wrapper_tidy() {
  (cd "$1" && go mod tidy -e >/dev/null 2>"$1/tidy.log") || { cat "$1/tidy.log" >&2; return 1; }
}

# k8s_ldflags: linker flags of a Kubernetes command at $K8S_VERSION (without them
# /version reports v0.0.0-master).
k8s_ldflags() {
  local minor=${K8S_VERSION#v1.}
  minor=${minor%%.*}
  echo "-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean"
}

# k8s_node_bins: the Kubernetes commands a single-node cluster needs besides
# kube-apiserver and etcd (scripts/clusterbins.sh, internal/cluster).
k8s_node_bins="kubelet kube-controller-manager kube-scheduler kube-proxy"

# k8s_build DIR BIN...: builds the named binaries (kube-apiserver, etcd and those
# of $k8s_node_bins) at $K8S_VERSION/$ETCD_VERSION into DIR, through one throw-away
# wrapper module that requires Kubernetes and etcd together. testenv.sh and
# clusterbins.sh both build through it, so the dependency versions are the same
# for every binary and a second build reuses the first one's compiled packages
# (two wrapper modules with different requirements resolve different versions of
# grpc, otel, protobuf... and share almost nothing in the build cache). The
# Kubernetes commands are built by one go build, which links them in parallel.
k8s_build() {
  local dir=$1 work ldflags b
  shift
  local k8s=() etcd=false
  for b in "$@"; do
    if [ "$b" = etcd ]; then etcd=true; else k8s+=("$b"); fi
  done
  mkdir -p "$dir"
  work=$(mktemp -d "$(dirname "$dir")/build.XXXXXX")
  # shellcheck disable=SC2064
  trap "rm -rf '$work'" EXIT
  (
    export GOWORK=off GOFLAGS=-mod=mod CGO_ENABLED=0
    k8s_wrapper_write "$work" trellis.local/k8s-build "k8s.io/kubernetes $K8S_VERSION" "go.etcd.io/etcd/server/v3 $ETCD_VERSION" -- \
      go.etcd.io/etcd/server/v3 \
      k8s.io/kubernetes/cmd/kube-apiserver \
      k8s.io/kubernetes/cmd/kube-controller-manager \
      k8s.io/kubernetes/cmd/kube-proxy \
      k8s.io/kubernetes/cmd/kube-scheduler \
      k8s.io/kubernetes/cmd/kubelet
    k8s_wrapper_tidy "$work"
    cd "$work"
    ldflags=$(k8s_ldflags)
    if [ ${#k8s[@]} -gt 0 ]; then
      local pkgs=()
      for b in "${k8s[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$b"); done
      go build -trimpath -ldflags "$ldflags" -o "$work/bin/" "${pkgs[@]}"
    fi
    if $etcd; then
      go build -trimpath -ldflags "-s -w" -o "$work/bin/etcd" go.etcd.io/etcd/server/v3
    fi
  )
  for b in "$@"; do mv "$work/bin/$b" "$dir/$b"; done
}
