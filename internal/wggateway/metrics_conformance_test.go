package wggateway

import (
	"io"
	"log/slog"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/trellis-garden/trellis/internal/metricstest"
)

// TestMetrics: the metrics conformance check (internal/metricstest) on the registry
// run builds, with one backend so the per-backend series exist.
func TestMetrics(t *testing.T) {
	metricstest.Check(t, metricstest.Daemon{Name: Name, Register: func(t testing.TB, reg prometheus.Registerer, ns string) {
		gw, err := New(DefaultConfig(), slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil {
			t.Fatal(err)
		}
		gw.SetBackends([]Backend{{Name: "b0", PublicKey: key(0), Endpoint: ap("10.0.0.1:51820")}})
		reg.MustRegister(gw.Collector(ns))
		NewSourceMetrics(reg, ns)
	}})
}
