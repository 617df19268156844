package otlptest

import (
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	metricspb "go.opentelemetry.io/proto/otlp/metrics/v1"
)

// DataPoint is one OTLP data point with its context, flattened for comparison with
// reflect.DeepEqual or go-cmp. Maps are never nil; empty slices are nil.
type DataPoint struct {
	Resource   map[string]string // resource attributes
	Scope      string            // instrumentation scope name
	Metric     string
	Type       string // gauge, sum, histogram, exponential_histogram or summary
	Monotonic  bool   // sum only
	Attributes map[string]string

	StartTimeUnixNano uint64
	TimeUnixNano      uint64

	// Value is a gauge's or sum's value (integers converted).
	Value float64

	// Count and Sum: histograms and summaries.
	Count uint64
	Sum   float64
	// BucketCounts and ExplicitBounds: histograms.
	BucketCounts   []uint64
	ExplicitBounds []float64
	// Exponential histograms.
	Scale          int32
	ZeroCount      uint64
	PositiveOffset int32
	Positive       []uint64
	NegativeOffset int32
	Negative       []uint64
	// Quantiles: summaries.
	Quantiles []Quantile
}

// Quantile is one quantile of a summary.
type Quantile struct {
	Quantile, Value float64
}

// Flatten returns the data points of rms in order.
func Flatten(rms []*metricspb.ResourceMetrics) []DataPoint {
	var out []DataPoint
	for _, rm := range rms {
		res := Attributes(rm.GetResource().GetAttributes())
		for _, sm := range rm.GetScopeMetrics() {
			for _, m := range sm.GetMetrics() {
				base := DataPoint{Resource: res, Scope: sm.GetScope().GetName(), Metric: m.GetName()}
				out = appendMetric(out, base, m)
			}
		}
	}
	return out
}

func appendMetric(out []DataPoint, base DataPoint, m *metricspb.Metric) []DataPoint {
	switch d := m.GetData().(type) {
	case *metricspb.Metric_Gauge:
		base.Type = "gauge"
		for _, p := range d.Gauge.GetDataPoints() {
			out = append(out, numberPoint(base, p))
		}
	case *metricspb.Metric_Sum:
		base.Type, base.Monotonic = "sum", d.Sum.GetIsMonotonic()
		for _, p := range d.Sum.GetDataPoints() {
			out = append(out, numberPoint(base, p))
		}
	case *metricspb.Metric_Histogram:
		base.Type = "histogram"
		for _, p := range d.Histogram.GetDataPoints() {
			dp := withPoint(base, p.GetAttributes(), p.GetStartTimeUnixNano(), p.GetTimeUnixNano())
			dp.Count, dp.Sum = p.GetCount(), p.GetSum()
			dp.BucketCounts, dp.ExplicitBounds = nilIfEmpty(p.GetBucketCounts()), nilIfEmpty(p.GetExplicitBounds())
			out = append(out, dp)
		}
	case *metricspb.Metric_ExponentialHistogram:
		base.Type = "exponential_histogram"
		for _, p := range d.ExponentialHistogram.GetDataPoints() {
			dp := withPoint(base, p.GetAttributes(), p.GetStartTimeUnixNano(), p.GetTimeUnixNano())
			dp.Count, dp.Sum, dp.Scale, dp.ZeroCount = p.GetCount(), p.GetSum(), p.GetScale(), p.GetZeroCount()
			dp.PositiveOffset, dp.Positive = p.GetPositive().GetOffset(), nilIfEmpty(p.GetPositive().GetBucketCounts())
			dp.NegativeOffset, dp.Negative = p.GetNegative().GetOffset(), nilIfEmpty(p.GetNegative().GetBucketCounts())
			out = append(out, dp)
		}
	case *metricspb.Metric_Summary:
		base.Type = "summary"
		for _, p := range d.Summary.GetDataPoints() {
			dp := withPoint(base, p.GetAttributes(), p.GetStartTimeUnixNano(), p.GetTimeUnixNano())
			dp.Count, dp.Sum = p.GetCount(), p.GetSum()
			for _, q := range p.GetQuantileValues() {
				dp.Quantiles = append(dp.Quantiles, Quantile{Quantile: q.GetQuantile(), Value: q.GetValue()})
			}
			out = append(out, dp)
		}
	}
	return out
}

func numberPoint(base DataPoint, p *metricspb.NumberDataPoint) DataPoint {
	dp := withPoint(base, p.GetAttributes(), p.GetStartTimeUnixNano(), p.GetTimeUnixNano())
	switch v := p.GetValue().(type) {
	case *metricspb.NumberDataPoint_AsDouble:
		dp.Value = v.AsDouble
	case *metricspb.NumberDataPoint_AsInt:
		dp.Value = float64(v.AsInt)
	}
	return dp
}

func withPoint(base DataPoint, attrs []*commonpb.KeyValue, start, ts uint64) DataPoint {
	base.Attributes = Attributes(attrs)
	base.StartTimeUnixNano, base.TimeUnixNano = start, ts
	return base
}

func nilIfEmpty[T any](s []T) []T {
	if len(s) == 0 {
		return nil
	}
	return s
}

// Attributes returns key/value attributes as a map of their string forms.
func Attributes(kvs []*commonpb.KeyValue) map[string]string {
	m := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		m[kv.GetKey()] = AnyValueString(kv.GetValue())
	}
	return m
}

// AnyValueString renders an attribute value: strings as they are, other scalars in
// Go syntax, arrays as [a b], key/value lists as {k=v}, bytes in hex.
func AnyValueString(v *commonpb.AnyValue) string {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	case *commonpb.AnyValue_BoolValue:
		return strconv.FormatBool(x.BoolValue)
	case *commonpb.AnyValue_IntValue:
		return strconv.FormatInt(x.IntValue, 10)
	case *commonpb.AnyValue_DoubleValue:
		return strconv.FormatFloat(x.DoubleValue, 'g', -1, 64)
	case *commonpb.AnyValue_BytesValue:
		return hex.EncodeToString(x.BytesValue)
	case *commonpb.AnyValue_ArrayValue:
		parts := make([]string, 0, len(x.ArrayValue.GetValues()))
		for _, e := range x.ArrayValue.GetValues() {
			parts = append(parts, AnyValueString(e))
		}
		return "[" + strings.Join(parts, " ") + "]"
	case *commonpb.AnyValue_KvlistValue:
		parts := make([]string, 0, len(x.KvlistValue.GetValues()))
		for _, kv := range x.KvlistValue.GetValues() {
			parts = append(parts, fmt.Sprintf("%s=%s", kv.GetKey(), AnyValueString(kv.GetValue())))
		}
		return "{" + strings.Join(parts, " ") + "}"
	}
	return ""
}
