# trellis: run `make help` for the targets.
SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

GO       ?= go
BIN      ?= bin
PKG      := github.com/trellis-garden/trellis
DAEMONS  := $(notdir $(wildcard cmd/*))
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
LDFLAGS  := -s -w -X $(PKG)/internal/version.version=$(VERSION) -X $(PKG)/internal/version.revision=$(REVISION)
# Go test flags; e.g. `make test TESTFLAGS=-race` or `make test TESTFLAGS='-run Leader -v'`.
TESTFLAGS ?=
# Build tags of every build, test, benchmark and demo (exported through GOFLAGS,
# so the binaries tests and the demo build get them too): grpcnotrace keeps
# golang.org/x/net/trace, and html/template with it, out of binaries that link
# gRPC (otel-shoot-scraper: 88 MB -> 48 MB unstripped).
GOTAGS ?= grpcnotrace
export GOFLAGS := -tags=$(GOTAGS) $(GOFLAGS)
TEST_TIMEOUT ?= 30m

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# Flags of the demo command, e.g. `make demo DEMOFLAGS="--duration 60s"` (docs/demo.md).
DEMOFLAGS ?=

.PHONY: demo
demo: testenv ## The main job: all six daemons against a local kube-apiserver with simulated surroundings (Ctrl-C stops).
	@mkdir -p $(TRELLIS_CACHE)/demo
	$(GO) build -o $(TRELLIS_CACHE)/demo/trellis-demo ./scripts/demo
	@# exec: the demo gets the terminal's Ctrl-C itself and stops every daemon cleanly.
	TRELLIS_TESTENV_ASSETS="$$(scripts/testenv.sh --path)" exec $(TRELLIS_CACHE)/demo/trellis-demo $(DEMOFLAGS)

.PHONY: build
build: ## Build every daemon into ./bin (version from git).
	@if [ -z "$(DAEMONS)" ]; then echo "no daemons under cmd/ yet"; exit 0; fi; \
	mkdir -p $(BIN); \
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ $(addprefix ./cmd/,$(DAEMONS)); \
	ls -1 $(BIN)

# Tools built from the Go module proxy into a cache outside the repo, keyed by version.
TRELLIS_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/trellis
KUSTOMIZE_VERSION := v5.8.2
KUSTOMIZE := $(TRELLIS_CACHE)/tools/kustomize-$(KUSTOMIZE_VERSION)/kustomize

# Container engine for `make images` (docker or podman); images are trellis/<daemon>:$(VERSION).
# Without one, `make images` builds the same images as tarballs in $(BIN)/images with
# go-containerregistry (scripts/images); `docker load` or `ctr images import` reads them.
ENGINE ?= $(shell command -v docker || command -v podman)
IMAGE_REGISTRY ?= trellis

.PHONY: images
images: ## Build one image per daemon: with docker/podman from ./Dockerfile, else as tarballs in ./bin/images.
	@if [ -z "$(ENGINE)" ]; then $(MAKE) --no-print-directory image-tarballs; exit 0; fi; \
	for d in $(DAEMONS); do \
	  $(ENGINE) build --target $$d --build-arg VERSION=$(VERSION) --build-arg REVISION=$(REVISION) -t $(IMAGE_REGISTRY)/$$d:$(VERSION) . ; \
	done

.PHONY: image-tarballs
image-tarballs: build ## Build one image tarball per daemon without a container engine (bin/images/<daemon>.tar).
	$(GO) run ./scripts/images --bin-dir $(BIN) --out $(BIN)/images --registry $(IMAGE_REGISTRY) \
	  --tag $(VERSION) --revision $(REVISION) $(DAEMONS)

# The local single-node cluster (internal/cluster, docs/development.md): state under
# $(CLUSTER_STATE); Kubernetes binaries cached beside the testenv's.
CLUSTER_STATE ?= $(TRELLIS_CACHE)/cluster
E2E_STATE ?= $(TRELLIS_CACHE)/e2e
E2E_TIMEOUT ?= 30m
CLUSTER_PACKAGES := containerd runc containernetworking-plugins iptables conntrack iproute2

.PHONY: clusterbins
clusterbins: testenv ## Build kubelet, kube-controller-manager, kube-scheduler and kube-proxy into the testenv cache.
	@scripts/clusterbins.sh >/dev/null

.PHONY: cluster-packages
cluster-packages: # Debian's containerd, runc, CNI plugins, iptables, conntrack when missing.
	@missing=; for c in containerd containerd-shim-runc-v2 runc ctr iptables conntrack ip; do \
	  command -v $$c >/dev/null || missing=1; done; [ -x /usr/lib/cni/bridge ] || missing=1; \
	if [ -n "$$missing" ]; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(CLUSTER_PACKAGES) >/dev/null; fi

.PHONY: cluster
cluster: clusterbins cluster-packages image-tarballs ## Start a single-node cluster on this machine (root) with the images of ./bin/images.
	$(GO) run ./scripts/cluster up --state $(CLUSTER_STATE) --bins "$$(scripts/testenv.sh --path)" --images $(BIN)/images

.PHONY: cluster-down
cluster-down: ## Stop the cluster of `make cluster` and leave the host as it was.
	$(GO) run ./scripts/cluster down --state $(CLUSTER_STATE) --bins "$$(scripts/testenv.sh --path)"

.PHONY: e2e
e2e: ## Deploy every daemon as pods on a fresh single-node cluster and prove each one's job (root on Linux).
	@if [ "$$(id -u)" != 0 ] || [ "$$(uname -s)" != Linux ]; then echo "make e2e: skipped (needs root on Linux)"; exit 0; fi; \
	$(MAKE) --no-print-directory clusterbins cluster-packages tools; \
	rc=0; TRELLIS_E2E=1 TRELLIS_E2E_STATE=$(E2E_STATE) TRELLIS_TESTENV_ASSETS="$$(scripts/testenv.sh --path)" \
	  TRELLIS_KUSTOMIZE=$(KUSTOMIZE) $(GO) test -count=1 -timeout $(E2E_TIMEOUT) $(TESTFLAGS) ./test/e2e/ || rc=$$?; \
	if [ $$rc = 0 ]; then cat $(E2E_STATE)/logs/e2e-summary.txt; fi; \
	$(GO) run ./scripts/cluster down --state $(E2E_STATE) --bins "$$(scripts/testenv.sh --path)" || rc=1; \
	exit $$rc

.PHONY: tools
tools: $(KUSTOMIZE) ## Build pinned tools (kustomize) into the cache outside the repo.

$(KUSTOMIZE):
	@mkdir -p $(dir $@)
	GOBIN=$(dir $@) GOWORK=off GOFLAGS= $(GO) install sigs.k8s.io/kustomize/kustomize/v5@$(KUSTOMIZE_VERSION)

.PHONY: testenv
testenv: ## Build kube-apiserver and etcd (on Linux with the node binaries of make cluster, in the same go build) into the cache outside the repo (cold 15-25 min, then instant).
	@scripts/testenv.sh >/dev/null

# The real gardener-resource-manager (v1.149.3, from the Go module proxy) for
# mr-signer's TestResourceManagerPrevention; cached beside the testenv. A cold build
# compiles gardener and its Kubernetes dependencies: 5-15 min on a quiet machine
# (about 15 min on a loaded 2-core one), then instant.
.PHONY: gardener-rm
gardener-rm: ## Build the real gardener-resource-manager into the testenv cache (cold 5-15 min, then instant).
	@scripts/gardener-rm.sh >/dev/null

.PHONY: check
check: ## gofmt and go vet (part of test).
	@out=$$(gofmt -l $$(git ls-files -co --exclude-standard '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

# Alerting rules and dashboards of deploy/components/monitoring. promtool: the one on
# PATH, else the one of Debian's prometheus package, unpacked into the cache (no
# service installed; runs `apt-get update` when the lists are missing). The query checks
# are a module of their own (tools/monitoring, outside go.work) so the Prometheus
# library stays out of the daemons' module graph.
PROMTOOL ?= $(or $(shell command -v promtool 2>/dev/null),$(TRELLIS_CACHE)/tools/prometheus-deb/usr/bin/promtool)
MONITORING := deploy/components/monitoring

.PHONY: monitoring
monitoring: $(PROMTOOL) ## Alerting rules (promtool check/test rules) and the dashboard and rule query checks (part of test).
	$(PROMTOOL) check rules $(MONITORING)/rules/*.rules.yaml
	$(PROMTOOL) test rules $(MONITORING)/rules/tests/*.test.yaml
	cd tools/monitoring && GOWORK=off $(GO) vet ./... && GOWORK=off $(GO) test -count=1 $(TESTFLAGS) ./...

$(TRELLIS_CACHE)/tools/prometheus-deb/usr/bin/promtool:
	@mkdir -p $(TRELLIS_CACHE)/tools
	cd $(TRELLIS_CACHE)/tools && rm -f prometheus_*.deb && { apt-get download prometheus 2>/dev/null || { apt-get update -qq && apt-get download prometheus; }; } && \
	  dpkg-deb -x prometheus_*.deb prometheus-deb && rm -f prometheus_*.deb

# Packages with assembly (internal/wgproto) have a generic Go path for other
# architectures and -tags purego: it is vetted and tested too, not only compiled.
ASM_PKGS := $(sort $(dir $(addprefix ./,$(shell git ls-files '*.s' 2>/dev/null))))

.PHONY: purego
purego: ## Vet and test the generic (no assembly) path of the packages with assembly, and build everything with -tags purego (part of test).
	$(GO) build -tags=$(GOTAGS),purego ./...
	$(GO) vet -tags=$(GOTAGS),purego $(ASM_PKGS)
	$(GO) test -count=1 -tags=$(GOTAGS),purego $(TESTFLAGS) $(ASM_PKGS)

# Generated files and their generators (`go generate` in the file's folder).
GENERATED := internal/wgproto/blake2s_compress.go:gen_blake2s.go internal/wgproto/match_amd64.s:gen_match_amd64.go

.PHONY: generated
generated: ## Check that generated files match what their generators write now (part of test).
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	for pair in $(GENERATED); do \
	  file=$${pair%%:*}; gen=$${pair##*:}; mkdir -p "$$tmp/$$gen.d"; cp "$$(dirname $$file)/$$gen" "$$tmp/$$gen.d/"; \
	  (cd "$$tmp/$$gen.d" && GOWORK=off GOFLAGS= $(GO) run $$gen) || exit 1; \
	  if ! diff -u "$$file" "$$tmp/$$gen.d/$$(basename $$file)"; then \
	    echo "$$file differs from what $$gen writes: run go generate ./$$(dirname $$file)"; exit 1; fi; \
	done; echo "generated files match their generators"

# otel-shoot-scraper beside a direct Prometheus scrape: the series stored through
# Prometheus's own OTLP translation against those of its scrape manager. A module of
# its own (tools/promcompat, outside go.work), like tools/monitoring, so that the
# Prometheus server packages stay out of the daemons' module graph.
.PHONY: promcompat
promcompat: ## otel-shoot-scraper's export compared with a direct Prometheus scrape (part of test).
	cd tools/promcompat && GOWORK=off $(GO) vet ./... && GOWORK=off $(GO) test -count=1 $(TESTFLAGS) ./...

.PHONY: test
test: check generated purego testenv gardener-rm tools monitoring promcompat ## All tests: gofmt, vet, unit and integration tests against a real kube-apiserver, alerting rules and dashboards, then the e2e on a real single-node cluster (root on Linux).
	TRELLIS_TESTENV_ASSETS="$$(scripts/testenv.sh --path)" TRELLIS_TESTENV_REQUIRED=true \
	  TRELLIS_GARDENER_RM="$$(scripts/gardener-rm.sh --path)" \
	  TRELLIS_KUSTOMIZE=$(KUSTOMIZE) $(GO) test -count=1 -timeout $(TEST_TIMEOUT) $(TESTFLAGS) ./...
	@# After the package tests, never beside them: the e2e cluster runs the same binaries.
	@$(MAKE) --no-print-directory e2e

.PHONY: bench
bench: testenv ## Benchmarks; each reports its ratio against a baseline measured in the same run.
	TRELLIS_TESTENV_ASSETS="$$(scripts/testenv.sh --path)" \
	  $(GO) test -run '^$$' -bench . -benchmem -count=1 -timeout $(TEST_TIMEOUT) $(TESTFLAGS) ./...

.PHONY: bench-zone-flow-tracer-1m
bench-zone-flow-tracer-1m: testenv ## zone-flow-tracer at a million conntrack entries (root): bare dump, tracer, built daemon; 3 dumps each.
	TRELLIS_TESTENV_ASSETS="$$(scripts/testenv.sh --path)" \
	  $(GO) test -run '^$$' -bench 'RealDump1M' -benchtime 3x -count=1 -timeout 60m ./internal/zoneflow/

.PHONY: bench-wg-gateway
bench-wg-gateway: testenv ## wg-gateway's relay benchmarks: UDP offload on/off against the plain batched forwarder (relay CPU time per datagram), and the in-process relay ratio.
	TRELLIS_TESTENV_ASSETS="$$(scripts/testenv.sh --path)" \
	  $(GO) test -run '^$$' -bench 'BenchmarkRelay|BenchmarkForwarder' -benchmem -count=1 $(TESTFLAGS) ./internal/wggateway/ ./internal/udpbatch/

.PHONY: lint
lint: check ## check plus staticcheck (pinned in tools/go.mod).
	$(GO) tool staticcheck ./...

.PHONY: clean
clean: ## Remove ./bin (the testenv cache stays; scripts/testenv.sh --path shows it).
	rm -rf $(BIN)
