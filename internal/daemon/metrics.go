package daemon

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/trellis-garden/trellis/internal/version"
)

// MetricNamespace is the Prometheus namespace of a daemon: trellis_<name> with dashes
// turned into underscores (wg-gateway -> trellis_wg_gateway).
func MetricNamespace(daemonName string) string {
	return "trellis_" + strings.ReplaceAll(daemonName, "-", "_")
}

// NewRegistry returns a daemon's own registry with Go runtime and process collectors
// and a build-info gauge. Nothing in trellis uses the global default registry.
func NewRegistry(daemonName string) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	info := version.Get()
	buildInfo := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: MetricNamespace(daemonName),
		Name:      "build_info",
		Help:      "Always 1; labels say which build is running.",
		ConstLabels: prometheus.Labels{
			"version":   info.Version,
			"revision":  info.Revision,
			"goversion": info.GoVersion,
		},
	})
	buildInfo.Set(1)
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		buildInfo,
	)
	return reg
}
