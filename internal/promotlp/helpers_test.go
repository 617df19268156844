package promotlp

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	metricspb "go.opentelemetry.io/proto/otlp/metrics/v1"

	"github.com/trellis-garden/trellis/internal/promtext"
)

// t0 is the first scrape time of the tests; scrapes are 15 s apart.
var t0 = time.Unix(1_700_000_000, 0)

// at returns the time of scrape i.
func at(i int) time.Time { return t0.Add(time.Duration(i) * 15 * time.Second) }

// ns returns the nanosecond time of scrape i.
func ns(i int) uint64 { return uint64(at(i).UnixNano()) }

// ls builds labels from name, value pairs.
func ls(kv ...string) []promtext.Label {
	var out []promtext.Label
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, promtext.Label{Name: []byte(kv[i]), Value: []byte(kv[i+1])})
	}
	return out
}

// smp builds a sample of family fam; its name is fam plus the suffix.
func smp(fam string, typ promtext.MetricType, suf promtext.Suffix, v float64, kv ...string) *promtext.Sample {
	return &promtext.Sample{
		Family: []byte(fam),
		Type:   typ,
		Name:   []byte(fam + suf.String()),
		Suffix: suf,
		Labels: ls(kv...),
		Value:  v,
	}
}

// withTS sets the sample's timestamp.
func withTS(s *promtext.Sample, ms int64) *promtext.Sample {
	s.TimestampMs, s.HasTimestamp = ms, true
	return s
}

// withMeta sets the sample's HELP and UNIT.
func withMeta(s *promtext.Sample, help, unit string) *promtext.Sample {
	s.Help, s.Unit = []byte(help), []byte(unit)
	return s
}

// attrs builds the expected attributes.
func attrs(kv ...string) []*commonpb.KeyValue {
	var out []*commonpb.KeyValue
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, stringKV(kv[i], kv[i+1]))
	}
	return out
}

// meta is the expected metric metadata of a Prometheus type.
func meta(typ string) []*commonpb.KeyValue { return attrs(metadataTypeKey, typ) }

// num builds an expected number point.
func num(start, t uint64, v float64, kv ...string) *metricspb.NumberDataPoint {
	return &metricspb.NumberDataPoint{
		Attributes:        attrs(kv...),
		StartTimeUnixNano: start,
		TimeUnixNano:      t,
		Value:             &metricspb.NumberDataPoint_AsDouble{AsDouble: v},
	}
}

// sumM builds an expected counter metric.
func sumM(name string, dps ...*metricspb.NumberDataPoint) *metricspb.Metric {
	return &metricspb.Metric{Name: name, Metadata: meta("counter"), Data: &metricspb.Metric_Sum{Sum: &metricspb.Sum{
		DataPoints:             dps,
		AggregationTemporality: metricspb.AggregationTemporality_AGGREGATION_TEMPORALITY_CUMULATIVE,
		IsMonotonic:            true,
	}}}
}

// gaugeM builds an expected gauge metric of Prometheus type typ.
func gaugeM(name, typ string, dps ...*metricspb.NumberDataPoint) *metricspb.Metric {
	return &metricspb.Metric{Name: name, Metadata: meta(typ), Data: &metricspb.Metric_Gauge{Gauge: &metricspb.Gauge{DataPoints: dps}}}
}

// histM builds an expected histogram metric.
func histM(name string, dps ...*metricspb.HistogramDataPoint) *metricspb.Metric {
	return &metricspb.Metric{Name: name, Metadata: meta("histogram"), Data: &metricspb.Metric_Histogram{Histogram: &metricspb.Histogram{
		DataPoints:             dps,
		AggregationTemporality: metricspb.AggregationTemporality_AGGREGATION_TEMPORALITY_CUMULATIVE,
	}}}
}

// hist builds an expected histogram point.
func hist(start, t, count uint64, sum *float64, bounds []float64, counts []uint64, kv ...string) *metricspb.HistogramDataPoint {
	return &metricspb.HistogramDataPoint{
		Attributes:        attrs(kv...),
		StartTimeUnixNano: start,
		TimeUnixNano:      t,
		Count:             count,
		Sum:               sum,
		BucketCounts:      counts,
		ExplicitBounds:    bounds,
	}
}

// summM builds an expected summary metric.
func summM(name string, dps ...*metricspb.SummaryDataPoint) *metricspb.Metric {
	return &metricspb.Metric{Name: name, Metadata: meta("summary"), Data: &metricspb.Metric_Summary{Summary: &metricspb.Summary{DataPoints: dps}}}
}

// summ builds an expected summary point; qv holds quantile, value pairs.
func summ(start, t, count uint64, sum float64, qv []float64, kv ...string) *metricspb.SummaryDataPoint {
	dp := &metricspb.SummaryDataPoint{
		Attributes:        attrs(kv...),
		StartTimeUnixNano: start,
		TimeUnixNano:      t,
		Count:             count,
		Sum:               sum,
	}
	for i := 0; i+1 < len(qv); i += 2 {
		dp.QuantileValues = append(dp.QuantileValues, &metricspb.SummaryDataPoint_ValueAtQuantile{Quantile: qv[i], Value: qv[i+1]})
	}
	return dp
}

// fp returns a pointer to v.
func fp(v float64) *float64 { return &v }

// checkMetrics fails t unless got equals want exactly.
func checkMetrics(t *testing.T, step int, got, want []*metricspb.Metric) {
	t.Helper()
	if len(got) == len(want) {
		same := true
		for i := range got {
			if !proto.Equal(got[i], want[i]) {
				same = false
				break
			}
		}
		if same {
			return
		}
	}
	t.Errorf("scrape %d: metrics differ\ngot:\n%s\nwant:\n%s", step, dump(got), dump(want))
}

// dump formats metrics for failure messages.
func dump(ms []*metricspb.Metric) string {
	var b strings.Builder
	for _, m := range ms {
		b.WriteString(prototext.Format(m))
		b.WriteString("---\n")
	}
	return b.String()
}
