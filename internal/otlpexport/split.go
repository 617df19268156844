package otlpexport

import (
	metricspb "go.opentelemetry.io/proto/otlp/metrics/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// fieldOverhead is the most an embedded message field adds to its message's size:
// a one-byte tag (all OTLP metric field numbers are below 16) and a length varint
// (at most 5 bytes for sizes below 4 GiB).
const fieldOverhead = 6

// cached is the protobuf size and marshal configuration that reuses the sizes a
// preceding proto.Size stored in the messages: Enqueue computes the batch's size once
// and splitting and marshalling then do not walk it again. Messages built here have
// no cached size and are measured as usual.
var cached = proto.MarshalOptions{UseCachedSize: true}

// splitResourceMetrics groups rms into chunks whose ExportMetricsServiceRequest
// encodes to at most maxBytes, keeping the order of data points. Resources, scopes
// and metrics are split (their descriptive fields repeated in every part) down to
// single data points; a data point larger than maxBytes gets a chunk of its own.
// proto.Size must have been called on rms (or a message holding them) just before.
func splitResourceMetrics(rms []*metricspb.ResourceMetrics, maxBytes int) [][]*metricspb.ResourceMetrics {
	return pack(rms, maxBytes, splitResource)
}

// pack groups items so that each group's encoded fields sum to at most budget;
// items too large for it are split with split (nil: never).
func pack[T proto.Message](items []T, budget int, split func(T, int) []T) [][]T {
	var groups [][]T
	var cur []T
	curSize := 0
	add := func(it T, size int) {
		if len(cur) > 0 && curSize+size > budget {
			groups = append(groups, cur)
			cur, curSize = nil, 0
		}
		cur = append(cur, it)
		curSize += size
	}
	for _, it := range items {
		size := fieldSize(cached.Size(it))
		if size <= budget || split == nil {
			add(it, size)
			continue
		}
		for _, part := range split(it, budget) {
			add(part, fieldSize(cached.Size(part)))
		}
	}
	if len(cur) > 0 {
		groups = append(groups, cur)
	}
	return groups
}

// fieldSize is the encoded size of an embedded message field of n bytes.
func fieldSize(n int) int { return 1 + protowire.SizeBytes(n) }

// childBudget is what the repeated children of a message may take when the message,
// as a field, must fit budget and its other fields take overhead bytes.
func childBudget(budget, overhead int) int { return budget - fieldOverhead - overhead }

func splitResource(rm *metricspb.ResourceMetrics, budget int) []*metricspb.ResourceMetrics {
	shell := func(sms []*metricspb.ScopeMetrics) *metricspb.ResourceMetrics {
		return &metricspb.ResourceMetrics{Resource: rm.Resource, SchemaUrl: rm.SchemaUrl, ScopeMetrics: sms}
	}
	var out []*metricspb.ResourceMetrics
	for _, g := range pack(rm.ScopeMetrics, childBudget(budget, cached.Size(shell(nil))), splitScope) {
		out = append(out, shell(g))
	}
	return out
}

func splitScope(sm *metricspb.ScopeMetrics, budget int) []*metricspb.ScopeMetrics {
	shell := func(ms []*metricspb.Metric) *metricspb.ScopeMetrics {
		return &metricspb.ScopeMetrics{Scope: sm.Scope, SchemaUrl: sm.SchemaUrl, Metrics: ms}
	}
	var out []*metricspb.ScopeMetrics
	for _, g := range pack(sm.Metrics, childBudget(budget, cached.Size(shell(nil))), splitMetric) {
		out = append(out, shell(g))
	}
	return out
}

// splitMetric splits the data points of m into metrics that repeat its name,
// description, unit, metadata and aggregation fields.
func splitMetric(m *metricspb.Metric, budget int) []*metricspb.Metric {
	base := func() *metricspb.Metric {
		return &metricspb.Metric{Name: m.Name, Description: m.Description, Unit: m.Unit, Metadata: m.Metadata}
	}
	switch d := m.Data.(type) {
	case *metricspb.Metric_Gauge:
		return splitPoints(d.Gauge.DataPoints, budget, func(ps []*metricspb.NumberDataPoint) *metricspb.Metric {
			out := base()
			out.Data = &metricspb.Metric_Gauge{Gauge: &metricspb.Gauge{DataPoints: ps}}
			return out
		})
	case *metricspb.Metric_Sum:
		return splitPoints(d.Sum.DataPoints, budget, func(ps []*metricspb.NumberDataPoint) *metricspb.Metric {
			out := base()
			out.Data = &metricspb.Metric_Sum{Sum: &metricspb.Sum{
				DataPoints: ps, AggregationTemporality: d.Sum.AggregationTemporality, IsMonotonic: d.Sum.IsMonotonic,
			}}
			return out
		})
	case *metricspb.Metric_Histogram:
		return splitPoints(d.Histogram.DataPoints, budget, func(ps []*metricspb.HistogramDataPoint) *metricspb.Metric {
			out := base()
			out.Data = &metricspb.Metric_Histogram{Histogram: &metricspb.Histogram{
				DataPoints: ps, AggregationTemporality: d.Histogram.AggregationTemporality,
			}}
			return out
		})
	case *metricspb.Metric_ExponentialHistogram:
		return splitPoints(d.ExponentialHistogram.DataPoints, budget, func(ps []*metricspb.ExponentialHistogramDataPoint) *metricspb.Metric {
			out := base()
			out.Data = &metricspb.Metric_ExponentialHistogram{ExponentialHistogram: &metricspb.ExponentialHistogram{
				DataPoints: ps, AggregationTemporality: d.ExponentialHistogram.AggregationTemporality,
			}}
			return out
		})
	case *metricspb.Metric_Summary:
		return splitPoints(d.Summary.DataPoints, budget, func(ps []*metricspb.SummaryDataPoint) *metricspb.Metric {
			out := base()
			out.Data = &metricspb.Metric_Summary{Summary: &metricspb.Summary{DataPoints: ps}}
			return out
		})
	}
	return []*metricspb.Metric{m}
}

// splitPoints packs points into metrics built by mk. The data message (Gauge, Sum,
// ...) is one more level of embedding than the metric, hence the second
// fieldOverhead.
func splitPoints[T proto.Message](points []T, budget int, mk func([]T) *metricspb.Metric) []*metricspb.Metric {
	var out []*metricspb.Metric
	for _, g := range pack(points, childBudget(budget, cached.Size(mk(nil)))-fieldOverhead, nil) {
		out = append(out, mk(g))
	}
	return out
}
