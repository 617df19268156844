package otelscraper

import (
	_ "embed"
	"slices"
	"sync"
)

// defaultRulesYAML reproduces the fixed allowlists with which Gardener's
// control-plane Prometheus in the seed scrapes a shoot's nodes today (through the
// shoot kube-apiserver's /proxy), so switching to otel-shoot-scraper changes how
// the metrics travel, not which ones:
//
//   - cadvisor and kubelet: github.com/gardener/gardener,
//     pkg/component/observability/monitoring/prometheus/shoot/scrapeconfigs.go
//     (ScrapeConfigs "cadvisor" and "kube-kubelet": the metric names kept, and the
//     keep on label namespace `(^$|^kube-system$)` of both).
//   - node-exporter: github.com/gardener/gardener,
//     pkg/component/observability/monitoring/nodeexporter/nodeexporter.go (the
//     names passed to shoot.ClusterComponentScrapeConfigSpec; formerly
//     monitoringAllowedMetrics in monitoring.go of the same folder).
//
// Differences, because these rules filter by family and label, not by relabelling:
//   - kubelet's kubelet_image_pull_duration_seconds_{bucket,sum,count} are the
//     one histogram family kubelet_image_pull_duration_seconds.
//   - Gardener's cadvisor job also rewrites labels, which rules do not: it copies
//     a systemd service's name from the cgroup id (/system.slice/x.service) into
//     container and systemd_service_name, marks host network series, then drops
//     id; it drops the pause container (container="POD") series and keeps network
//     series only for eth0/en*/tunl0 interfaces. Here id stays (it is what tells
//     systemd services apart) and the POD and interface filters are left out; the
//     namespace filter, the part that bounds the volume, is kept.
//
// kubelet-resource, pods and every other job keep all families, with a series
// limit per target.
//
//go:embed default-rules.yaml
var defaultRulesYAML []byte

var defaultRules = sync.OnceValue(func() *Rules {
	r, err := ParseRules(defaultRulesYAML)
	if err != nil {
		// The embedded document is tested; this is a build defect.
		panic("otelscraper: built-in filter rules: " + err.Error())
	}
	return r
})

// DefaultRules returns the built-in rules (DefaultRulesYAML, compiled once).
func DefaultRules() *Rules { return defaultRules() }

// DefaultRulesYAML returns the built-in rules document, a starting point for a
// rules ConfigMap.
func DefaultRulesYAML() []byte { return slices.Clone(defaultRulesYAML) }
