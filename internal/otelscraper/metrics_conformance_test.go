package otelscraper

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/trellis-garden/trellis/internal/metricstest"
	"github.com/trellis-garden/trellis/internal/otlpexport"
)

// TestMetrics: the metrics conformance check (internal/metricstest) on the registry
// run builds: the exporter's metrics, the scraper's and the rule source's.
func TestMetrics(t *testing.T) {
	metricstest.Check(t, metricstest.Daemon{Name: Name, Register: func(t testing.TB, reg prometheus.Registerer, ns string) {
		exp, err := otlpexport.New(otlpexport.Config{Endpoint: "127.0.0.1:4317", Insecure: true, QueueDir: t.TempDir()}, nil, reg, ns)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = exp.Close() })
		newMetrics(reg, ns)
		newRuleMetrics(reg, ns) // what NewRuleSource and NewFileRuleSource register
	}})
}
