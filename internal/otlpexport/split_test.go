package otlpexport

import (
	"fmt"
	"testing"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	metricspb "go.opentelemetry.io/proto/otlp/metrics/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	"google.golang.org/protobuf/proto"
)

func kv(k, v string) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
}

// mixedMetrics has every metric type, several resources and scopes.
func mixedMetrics(resources, pointsPerMetric int) []*metricspb.ResourceMetrics {
	var rms []*metricspb.ResourceMetrics
	for r := range resources {
		var ms []*metricspb.Metric
		num := func(i int) []*metricspb.NumberDataPoint {
			var ps []*metricspb.NumberDataPoint
			for j := range pointsPerMetric {
				ps = append(ps, &metricspb.NumberDataPoint{
					Attributes:   []*commonpb.KeyValue{kv("series", fmt.Sprint(j)), kv("metric", fmt.Sprint(i))},
					TimeUnixNano: uint64(j), Value: &metricspb.NumberDataPoint_AsInt{AsInt: int64(j)},
				})
			}
			return ps
		}
		ms = append(ms,
			&metricspb.Metric{Name: "g", Data: &metricspb.Metric_Gauge{Gauge: &metricspb.Gauge{DataPoints: num(0)}}},
			&metricspb.Metric{Name: "s", Unit: "By", Data: &metricspb.Metric_Sum{Sum: &metricspb.Sum{
				DataPoints: num(1), IsMonotonic: true, AggregationTemporality: metricspb.AggregationTemporality_AGGREGATION_TEMPORALITY_CUMULATIVE,
			}}},
		)
		var hs []*metricspb.HistogramDataPoint
		var es []*metricspb.ExponentialHistogramDataPoint
		var ss []*metricspb.SummaryDataPoint
		for j := range pointsPerMetric {
			attrs := []*commonpb.KeyValue{kv("series", fmt.Sprint(j))}
			hs = append(hs, &metricspb.HistogramDataPoint{Attributes: attrs, Count: 3, BucketCounts: []uint64{1, 2}, ExplicitBounds: []float64{1}})
			es = append(es, &metricspb.ExponentialHistogramDataPoint{Attributes: attrs, Count: 3, Scale: 2, Positive: &metricspb.ExponentialHistogramDataPoint_Buckets{BucketCounts: []uint64{1, 2}}})
			ss = append(ss, &metricspb.SummaryDataPoint{Attributes: attrs, Count: 3, QuantileValues: []*metricspb.SummaryDataPoint_ValueAtQuantile{{Quantile: 0.5, Value: 1}}})
		}
		ms = append(ms,
			&metricspb.Metric{Name: "h", Data: &metricspb.Metric_Histogram{Histogram: &metricspb.Histogram{DataPoints: hs}}},
			&metricspb.Metric{Name: "e", Data: &metricspb.Metric_ExponentialHistogram{ExponentialHistogram: &metricspb.ExponentialHistogram{DataPoints: es}}},
			&metricspb.Metric{Name: "q", Data: &metricspb.Metric_Summary{Summary: &metricspb.Summary{DataPoints: ss}}},
		)
		rms = append(rms, &metricspb.ResourceMetrics{
			Resource: &resourcepb.Resource{Attributes: []*commonpb.KeyValue{kv("node", fmt.Sprint(r))}},
			ScopeMetrics: []*metricspb.ScopeMetrics{
				{Scope: &commonpb.InstrumentationScope{Name: "a"}, Metrics: ms[:2]},
				{Scope: &commonpb.InstrumentationScope{Name: "b"}, Metrics: ms[2:]},
			},
		})
	}
	return rms
}

// pointKeys lists resource/scope/metric/series of every data point, in order.
func pointKeys(rms []*metricspb.ResourceMetrics) []string {
	var keys []string
	add := func(prefix string, attrs []*commonpb.KeyValue) {
		keys = append(keys, prefix+"/"+attrs[0].GetValue().GetStringValue())
	}
	for _, rm := range rms {
		for _, sm := range rm.ScopeMetrics {
			for _, m := range sm.Metrics {
				prefix := fmt.Sprintf("%s/%s/%s/%s", rm.Resource.Attributes[0].Value.GetStringValue(), sm.Scope.Name, m.Name, m.Unit)
				switch d := m.Data.(type) {
				case *metricspb.Metric_Gauge:
					for _, p := range d.Gauge.DataPoints {
						add(prefix, p.Attributes)
					}
				case *metricspb.Metric_Sum:
					if !d.Sum.IsMonotonic || d.Sum.AggregationTemporality != metricspb.AggregationTemporality_AGGREGATION_TEMPORALITY_CUMULATIVE {
						keys = append(keys, "lost sum fields")
					}
					for _, p := range d.Sum.DataPoints {
						add(prefix, p.Attributes)
					}
				case *metricspb.Metric_Histogram:
					for _, p := range d.Histogram.DataPoints {
						add(prefix, p.Attributes)
					}
				case *metricspb.Metric_ExponentialHistogram:
					for _, p := range d.ExponentialHistogram.DataPoints {
						add(prefix, p.Attributes)
					}
				case *metricspb.Metric_Summary:
					for _, p := range d.Summary.DataPoints {
						add(prefix, p.Attributes)
					}
				}
			}
		}
	}
	return keys
}

func TestSplitResourceMetrics(t *testing.T) {
	rms := mixedMetrics(3, 200)
	total := proto.Size(&metricspb.MetricsData{ResourceMetrics: rms})
	for _, maxBytes := range []int{total, total / 2, 4096, 700, 100} {
		t.Run(fmt.Sprint(maxBytes), func(t *testing.T) {
			chunks := splitResourceMetrics(rms, maxBytes)
			var merged []*metricspb.ResourceMetrics
			for _, c := range chunks {
				size := proto.Size(&metricspb.MetricsData{ResourceMetrics: c})
				if size > maxBytes && countPoints(c) > 1 {
					t.Errorf("chunk of %d bytes (%d points) exceeds %d", size, countPoints(c), maxBytes)
				}
				merged = append(merged, c...)
			}
			if got, want := pointKeys(merged), pointKeys(rms); !equalSlices(got, want) {
				t.Fatalf("split lost or reordered points: %d keys, want %d", len(got), len(want))
			}
			if got, want := countPoints(merged), countPoints(rms); got != want {
				t.Errorf("countPoints = %d, want %d", got, want)
			}
			if maxBytes == total && len(chunks) != 1 {
				t.Errorf("%d chunks, want 1", len(chunks))
			}
		})
	}
}

func TestCountPoints(t *testing.T) {
	if got := countPoints(mixedMetrics(2, 7)); got != 2*5*7 {
		t.Errorf("countPoints = %d, want 70", got)
	}
}
