package mrsigner

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/trellis-garden/trellis/internal/metricstest"
)

// TestMetrics: the metrics conformance check (internal/metricstest) on the registry
// run builds.
func TestMetrics(t *testing.T) {
	metricstest.Check(t, metricstest.Daemon{Name: Name, Register: func(t testing.TB, reg prometheus.Registerer, ns string) {
		reg.MustRegister(newMetrics(ns).collectors()...)
		reg.MustRegister(quarantinedGauge(ns, func() int { return 0 }))
	}})
}
