package otlpexport

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Values of the result label of export_requests_total.
const (
	resultSuccess        = "success"
	resultRetryableError = "retryable_error"
	resultPermanentError = "permanent_error"
)

// Values of the reason label of queue_dropped_data_points_total.
const (
	reasonFull           = "full"
	reasonPermanentError = "permanent_error"
	reasonCorrupt        = "corrupt"
)

// metrics are the exporter's Prometheus series (listed in the package documentation).
type metrics struct {
	requests        *prometheus.CounterVec
	duration        prometheus.Histogram
	pointsSent      prometheus.Counter
	dropped         *prometheus.CounterVec
	corruptRecords  prometheus.Counter
	partialRejected prometheus.Counter
}

func newMetrics(namespace string) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "export_requests_total",
			Help: "OTLP export requests by result: success, retryable_error (retried later) or permanent_error (batch dropped).",
		}, []string{"result"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Name: "export_duration_seconds",
			Help:    "Duration of OTLP export requests, successful or not.",
			Buckets: []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30},
		}),
		pointsSent: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "export_data_points_total",
			Help: "Data points acknowledged by the OTLP receiver (including any it rejected in a partial success).",
		}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "queue_dropped_data_points_total",
			Help: "Data points removed from the export queue without delivery, by reason: full (oldest dropped), permanent_error (rejected by the receiver) or corrupt (damaged on disk).",
		}, []string{"reason"}),
		corruptRecords: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "queue_corrupt_records_total",
			Help: "Damaged or torn queue records skipped on recovery or when read.",
		}),
		partialRejected: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "partial_success_rejected_data_points_total",
			Help: "Data points the OTLP receiver rejected in partial_success responses.",
		}),
	}
	for _, r := range []string{resultSuccess, resultRetryableError, resultPermanentError} {
		m.requests.WithLabelValues(r)
	}
	for _, r := range []string{reasonFull, reasonPermanentError, reasonCorrupt} {
		m.dropped.WithLabelValues(r)
	}
	return m
}

// queueGauges are the queue's gauges, read from the queue at scrape time.
func queueGauges(namespace string, q *queue) []prometheus.Collector {
	return []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: namespace, Name: "queue_entries",
			Help: "Records in the export queue.",
		}, func() float64 { n, _ := q.len(); return float64(n) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: namespace, Name: "queue_bytes",
			Help: "Bytes of the records in the export queue, record headers included.",
		}, func() float64 { _, b := q.len(); return float64(b) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: namespace, Name: "queue_oldest_age_seconds",
			Help: "Age of the oldest record in the export queue; 0 when empty.",
		}, func() float64 { return q.oldestAge().Seconds() }),
	}
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.requests, m.duration, m.pointsSent, m.dropped, m.corruptRecords, m.partialRejected}
}

// register registers cs on reg; on failure it unregisters what it registered.
func register(reg prometheus.Registerer, cs []prometheus.Collector) error {
	if reg == nil {
		return nil
	}
	for i, c := range cs {
		if err := reg.Register(c); err != nil {
			for _, done := range cs[:i] {
				reg.Unregister(done)
			}
			return fmt.Errorf("registering metrics: %w", err)
		}
	}
	return nil
}
