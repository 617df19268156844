package testkit

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// Metric returns the value of the first series of the metric family name in g
// that carries every label pair of labels (name, value, name, value, ...; an
// empty value matches an absent label, as in PromQL): a
// counter's or gauge's value, a histogram's or summary's sample count. ok is
// false when there is no such series. A failing Gather fails the test.
func Metric(t testing.TB, g prometheus.Gatherer, name string, labels ...string) (v float64, ok bool) {
	t.Helper()
	if len(labels)%2 != 0 {
		t.Fatalf("testkit.Metric(%s): labels %q are not name/value pairs", name, labels)
	}
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("gather %s: %v", name, err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if have[labels[i]] != labels[i+1] { // absent is empty, as in PromQL
					continue series
				}
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue(), true
			case m.Gauge != nil:
				return m.Gauge.GetValue(), true
			case m.Untyped != nil:
				return m.Untyped.GetValue(), true
			case m.Histogram != nil:
				return float64(m.Histogram.GetSampleCount()), true
			case m.Summary != nil:
				return float64(m.Summary.GetSampleCount()), true
			}
		}
	}
	return 0, false
}
