package zoneflow

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/trellis-garden/trellis/internal/metricstest"
)

// TestMetrics: the metrics conformance check (internal/metricstest) on the registry
// run builds, with one observed cross-zone flow so the flow collector reports every
// family, labelled as with --metrics.labels=workload (the most labels).
func TestMetrics(t *testing.T) {
	metricstest.Check(t, metricstest.Daemon{Name: Name, Register: func(t testing.TB, reg prometheus.Registerer, ns string) {
		m := newMetrics(ns)
		reg.MustRegister(m.collectors()...)
		p := newTestProcessor("n1")
		f := flow(1, n1Pod, n2Pod, n2Pod, n1Pod, 1, 1)
		p.Observe(&f)
		prices, err := DefaultPrices("aws")
		if err != nil {
			t.Fatal(err)
		}
		reg.MustRegister(newFlowCollector(ns, p, LabelsWorkload, prices))
	}})
}
