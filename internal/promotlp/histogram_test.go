package promotlp

import (
	"math"
	"testing"

	metricspb "go.opentelemetry.io/proto/otlp/metrics/v1"

	"github.com/trellis-garden/trellis/internal/promtext"
)

// h builds the samples of one histogram series: le, cumulative count pairs
// ("le" as exposed), then _sum and _count; labels kv are on every sample.
func h(fam string, les []string, cums []float64, sum, count float64, kv ...string) []*promtext.Sample {
	var out []*promtext.Sample
	for i, le := range les {
		out = append(out, smp(fam, histogram, bucketS, cums[i], append(append([]string{}, kv...), "le", le)...))
	}
	out = append(out, smp(fam, histogram, sumS, sum, kv...), smp(fam, histogram, countS, count, kv...))
	return out
}

func TestHistogram(t *testing.T) {
	inf := []string{"0.1", "0.5", "1", "+Inf"}
	runAll(t, []convCase{
		{
			name: "de-cumulated buckets, +Inf is the overflow bucket",
			scrapes: []scrape{
				{
					samples: h("rpc_seconds", inf, []float64{1, 3, 3, 4}, 2.5, 4, "m", "get"),
					want: []*metricspb.Metric{histM("rpc_seconds",
						hist(ns(0), ns(0), 4, fp(2.5), []float64{0.1, 0.5, 1}, []uint64{1, 2, 0, 1}, "m", "get"))},
					stats: one(1),
				},
				{
					samples: h("rpc_seconds", inf, []float64{2, 5, 6, 9}, 7, 9, "m", "get"),
					want: []*metricspb.Metric{histM("rpc_seconds",
						hist(ns(0), ns(1), 9, fp(7), []float64{0.1, 0.5, 1}, []uint64{2, 3, 1, 3}, "m", "get"))},
					stats: one(1),
				},
				{
					// Reset: the count decreased.
					samples: h("rpc_seconds", inf, []float64{0, 1, 1, 1}, 0.3, 1, "m", "get"),
					want: []*metricspb.Metric{histM("rpc_seconds",
						hist(ns(2)-ms, ns(2), 1, fp(0.3), []float64{0.1, 0.5, 1}, []uint64{0, 1, 0, 0}, "m", "get"))},
					stats: Stats{Series: 1, DataPoints: 1, Resets: 1},
				},
			},
		},
		{
			name: "unsorted buckets, no +Inf: count gives the overflow",
			scrapes: []scrape{{
				samples: h("x", []string{"1", "0.5"}, []float64{3, 2}, 9, 5),
				want:    []*metricspb.Metric{histM("x", hist(ns(0), ns(0), 5, fp(9), []float64{0.5, 1}, []uint64{2, 1, 2}))},
				stats:   one(1),
			}},
		},
		{
			name: "only _count and _sum; only _count",
			scrapes: []scrape{{
				samples: append(h("x", nil, nil, 1.5, 3), smp("y", histogram, countS, 2)),
				want: []*metricspb.Metric{
					histM("x", hist(ns(0), ns(0), 3, fp(1.5), nil, []uint64{3})),
					histM("y", hist(ns(0), ns(0), 2, nil, nil, []uint64{2})),
				},
				stats: one(2),
			}},
		},
		{
			name: "fractional counts are truncated and still add up",
			scrapes: []scrape{{
				samples: h("x", []string{"1", "+Inf"}, []float64{1.7, 2.2}, 1, 2.2),
				want:    []*metricspb.Metric{histM("x", hist(ns(0), ns(0), 2, fp(1), []float64{1}, []uint64{1, 1}))},
				stats:   one(1),
			}},
		},
		{
			name: "start from _created, time from _count",
			scrapes: []scrape{{
				samples: append(
					h("x", []string{"+Inf"}, []float64{1}, 1, 1)[:2],
					withTS(smp("x", histogram, countS, 1), 1_700_000_001_000),
					smp("x", histogram, created, 1_699_000_000),
				),
				want:  []*metricspb.Metric{histM("x", hist(1_699_000_000_000*ms, 1_700_000_001_000*ms, 1, fp(1), nil, []uint64{1}))},
				stats: one(1),
			}},
		},
		{
			name: "one bad histogram does not spoil its family",
			scrapes: []scrape{{
				samples: append(
					h("x", []string{"1", "+Inf"}, []float64{2, 1}, 1, 1, "s", "bad"),
					h("x", []string{"1", "+Inf"}, []float64{1, 1}, 1, 1, "s", "good")...),
				want:  []*metricspb.Metric{histM("x", hist(ns(0), ns(0), 1, fp(1), []float64{1}, []uint64{1, 0}, "s", "good"))},
				stats: Stats{Series: 2, DataPoints: 1, DroppedInvalid: 1},
			}},
		},
	})
}

func TestHistogramInvalid(t *testing.T) {
	nan := math.NaN()
	cases := []struct {
		name    string
		samples []*promtext.Sample
	}{
		{"decreasing buckets", h("x", []string{"1", "2", "+Inf"}, []float64{3, 2, 3}, 1, 3)},
		{"+Inf differs from _count", h("x", []string{"1", "+Inf"}, []float64{1, 2}, 1, 3)},
		{"bucket above _count", h("x", []string{"1", "2"}, []float64{1, 4}, 1, 3)},
		{"no _count", h("x", []string{"1", "+Inf"}, []float64{1, 1}, 1, 1)[:3]},
		{"duplicate le", h("x", []string{"1", "1.0", "+Inf"}, []float64{1, 1, 1}, 1, 1)},
		{"unparsable le", h("x", []string{"one", "+Inf"}, []float64{1, 1}, 1, 1)},
		{"NaN le", h("x", []string{"NaN", "+Inf"}, []float64{1, 1}, 1, 1)},
		{"missing le", append(h("x", []string{"+Inf"}, []float64{1}, 1, 1), smp("x", histogram, bucketS, 1))},
		{"NaN bucket", h("x", []string{"1", "+Inf"}, []float64{nan, 1}, 1, 1)},
		{"negative bucket", h("x", []string{"1", "+Inf"}, []float64{-1, 1}, 1, 1)},
		{"NaN count", h("x", []string{"1"}, []float64{1}, 1, nan)},
		{"infinite count", h("x", []string{"1", "+Inf"}, []float64{1, math.Inf(1)}, 1, math.Inf(1))},
		{"duplicate _count", append(h("x", []string{"+Inf"}, []float64{1}, 1, 1), smp("x", histogram, countS, 1))},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			run(t, convCase{scrapes: []scrape{{
				samples: tc.samples,
				stats:   Stats{Series: 1, DroppedInvalid: 1},
			}}})
		})
	}
}

// q builds the samples of one summary series: quantile, value pairs, then
// _sum and _count.
func q(fam string, qs []string, vals []float64, sum, count float64, kv ...string) []*promtext.Sample {
	var out []*promtext.Sample
	for i, qq := range qs {
		out = append(out, smp(fam, summary, none, vals[i], append(append([]string{}, kv...), "quantile", qq)...))
	}
	return append(out, smp(fam, summary, sumS, sum, kv...), smp(fam, summary, countS, count, kv...))
}

func TestSummary(t *testing.T) {
	nan := math.NaN()
	runAll(t, []convCase{
		{
			name: "quantiles sorted, NaN values kept, reset on count",
			scrapes: []scrape{
				{
					samples: q("lat", []string{"0.99", "0.5"}, []float64{nan, 1.5}, 10, 3, "op", "r"),
					want:    []*metricspb.Metric{summM("lat", summ(ns(0), ns(0), 3, 10, []float64{0.5, 1.5, 0.99, nan}, "op", "r"))},
					stats:   one(1),
				},
				{
					samples: q("lat", []string{"0.5", "0.99"}, []float64{1, 2}, 12, 5, "op", "r"),
					want:    []*metricspb.Metric{summM("lat", summ(ns(0), ns(1), 5, 12, []float64{0.5, 1, 0.99, 2}, "op", "r"))},
					stats:   one(1),
				},
				{
					samples: q("lat", []string{"0.5", "0.99"}, []float64{1, 2}, 1, 1, "op", "r"),
					want:    []*metricspb.Metric{summM("lat", summ(ns(2)-ms, ns(2), 1, 1, []float64{0.5, 1, 0.99, 2}, "op", "r"))},
					stats:   Stats{Series: 1, DataPoints: 1, Resets: 1},
				},
			},
		},
		{
			name: "no quantiles",
			scrapes: []scrape{{
				samples: q("lat", nil, nil, 2, 1),
				want:    []*metricspb.Metric{summM("lat", summ(ns(0), ns(0), 1, 2, nil))},
				stats:   one(1),
			}},
		},
		{
			name: "invalid: no _count, quantile out of range, duplicate quantile",
			scrapes: []scrape{{
				samples: append(append(
					q("a", []string{"0.5"}, []float64{1}, 2, 1)[:2],
					q("b", []string{"1.5"}, []float64{1}, 2, 1)...),
					q("c", []string{"0.5", "0.50"}, []float64{1, 1}, 2, 1)...),
				stats: Stats{Series: 3, DroppedInvalid: 3},
			}},
		},
	})
}
