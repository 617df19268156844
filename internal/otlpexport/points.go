package otlpexport

import metricspb "go.opentelemetry.io/proto/otlp/metrics/v1"

// countPoints returns the data points in rms (one per number, histogram or summary
// point).
func countPoints(rms []*metricspb.ResourceMetrics) uint64 {
	var n uint64
	for _, rm := range rms {
		for _, sm := range rm.GetScopeMetrics() {
			for _, m := range sm.GetMetrics() {
				n += uint64(metricPoints(m))
			}
		}
	}
	return n
}

func metricPoints(m *metricspb.Metric) int {
	switch d := m.GetData().(type) {
	case *metricspb.Metric_Gauge:
		return len(d.Gauge.GetDataPoints())
	case *metricspb.Metric_Sum:
		return len(d.Sum.GetDataPoints())
	case *metricspb.Metric_Histogram:
		return len(d.Histogram.GetDataPoints())
	case *metricspb.Metric_ExponentialHistogram:
		return len(d.ExponentialHistogram.GetDataPoints())
	case *metricspb.Metric_Summary:
		return len(d.Summary.GetDataPoints())
	}
	return 0
}
