package eventwatcher

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/trellis-garden/trellis/internal/imds"
	"github.com/trellis-garden/trellis/internal/metricstest"
)

// TestMetrics: the metrics conformance check (internal/metricstest) on the registry
// run builds (New registers the controller's metrics).
func TestMetrics(t *testing.T) {
	metricstest.Check(t, metricstest.Daemon{Name: Name, Register: func(t testing.TB, reg prometheus.Registerer, ns string) {
		client, err := kubernetes.NewForConfig(&rest.Config{Host: "https://127.0.0.1:1"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := New(client, newFakeSource(imds.Azure), Config{NodeName: "n1"}, nil, reg, ns); err != nil {
			t.Fatal(err)
		}
	}})
}
