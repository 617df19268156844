package egressreporter

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/trellis-garden/trellis/internal/metricstest"
)

// TestMetrics: the metrics conformance check (internal/metricstest) on the
// registries run and runProbe build (the probe is the egress-probe daemon, its
// table is in docs/egress-reporter.md).
func TestMetrics(t *testing.T) {
	t.Run(Name, func(t *testing.T) {
		metricstest.Check(t, metricstest.Daemon{Name: Name, Register: func(t testing.TB, reg prometheus.Registerer, ns string) {
			reg.MustRegister(newMetrics(ns).collectors()...)
		}})
	})
	t.Run(ProbeName, func(t *testing.T) {
		metricstest.Check(t, metricstest.Daemon{Name: ProbeName, Doc: Name, Register: func(t testing.TB, reg prometheus.Registerer, ns string) {
			reg.MustRegister(newProbeMetrics(ns).collectors()...)
		}})
	})
}
