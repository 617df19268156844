package otlptest

import (
	"reflect"
	"testing"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	metricspb "go.opentelemetry.io/proto/otlp/metrics/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
)

func TestFlatten(t *testing.T) {
	sum := 4.5
	attrs := []*commonpb.KeyValue{
		{Key: "s", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: "x"}}},
		{Key: "i", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: -3}}},
		{Key: "a", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_ArrayValue{ArrayValue: &commonpb.ArrayValue{
			Values: []*commonpb.AnyValue{{Value: &commonpb.AnyValue_BoolValue{BoolValue: true}}, {Value: &commonpb.AnyValue_DoubleValue{DoubleValue: 0.5}}},
		}}}},
	}
	rms := []*metricspb.ResourceMetrics{{
		Resource: &resourcepb.Resource{Attributes: attrs[:1]},
		ScopeMetrics: []*metricspb.ScopeMetrics{{
			Scope: &commonpb.InstrumentationScope{Name: "scope"},
			Metrics: []*metricspb.Metric{
				{Name: "sum", Data: &metricspb.Metric_Sum{Sum: &metricspb.Sum{IsMonotonic: true, DataPoints: []*metricspb.NumberDataPoint{
					{Attributes: attrs, StartTimeUnixNano: 1, TimeUnixNano: 2, Value: &metricspb.NumberDataPoint_AsInt{AsInt: 7}},
				}}}},
				{Name: "hist", Data: &metricspb.Metric_Histogram{Histogram: &metricspb.Histogram{DataPoints: []*metricspb.HistogramDataPoint{
					{TimeUnixNano: 2, Count: 3, Sum: &sum, BucketCounts: []uint64{1, 2}, ExplicitBounds: []float64{1}},
				}}}},
				{Name: "exp", Data: &metricspb.Metric_ExponentialHistogram{ExponentialHistogram: &metricspb.ExponentialHistogram{DataPoints: []*metricspb.ExponentialHistogramDataPoint{
					{Count: 2, Scale: 3, ZeroCount: 1, Positive: &metricspb.ExponentialHistogramDataPoint_Buckets{Offset: -1, BucketCounts: []uint64{1}}},
				}}}},
				{Name: "summary", Data: &metricspb.Metric_Summary{Summary: &metricspb.Summary{DataPoints: []*metricspb.SummaryDataPoint{
					{Count: 5, Sum: 10, QuantileValues: []*metricspb.SummaryDataPoint_ValueAtQuantile{{Quantile: 0.99, Value: 9}}},
				}}}},
			},
		}},
	}}
	res := map[string]string{"s": "x"}
	want := []DataPoint{
		{Resource: res, Scope: "scope", Metric: "sum", Type: "sum", Monotonic: true, Attributes: map[string]string{"s": "x", "i": "-3", "a": "[true 0.5]"}, StartTimeUnixNano: 1, TimeUnixNano: 2, Value: 7},
		{Resource: res, Scope: "scope", Metric: "hist", Type: "histogram", Attributes: map[string]string{}, TimeUnixNano: 2, Count: 3, Sum: 4.5, BucketCounts: []uint64{1, 2}, ExplicitBounds: []float64{1}},
		{Resource: res, Scope: "scope", Metric: "exp", Type: "exponential_histogram", Attributes: map[string]string{}, Count: 2, Scale: 3, ZeroCount: 1, PositiveOffset: -1, Positive: []uint64{1}},
		{Resource: res, Scope: "scope", Metric: "summary", Type: "summary", Attributes: map[string]string{}, Count: 5, Sum: 10, Quantiles: []Quantile{{0.99, 9}}},
	}
	if got := Flatten(rms); !reflect.DeepEqual(got, want) {
		t.Errorf("Flatten:\n got %+v\nwant %+v", got, want)
	}
}
