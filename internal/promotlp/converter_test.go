package promotlp

import (
	"maps"
	"math"
	"testing"

	metricspb "go.opentelemetry.io/proto/otlp/metrics/v1"

	"github.com/trellis-garden/trellis/internal/promtext"
)

// scrape is one scrape of a test: its samples and what it must produce.
type scrape struct {
	samples []*promtext.Sample
	extra   []promtext.Label
	want    []*metricspb.Metric
	stats   Stats
}

// convCase is a sequence of scrapes of one target.
type convCase struct {
	name    string
	opts    Options
	scrapes []scrape
}

// run feeds the scrapes of tc (scrape i at at(i)) to one Converter.
func run(t *testing.T, tc convCase) {
	t.Helper()
	c := New(tc.opts)
	// Every case also proves FinishEncoded equivalent to Finish.
	tw := newEncodedTwin(t, tc.opts, true)
	for i, sc := range tc.scrapes {
		c.Begin(at(i))
		tw.begin(at(i))
		for _, s := range sc.samples {
			addBoth(c, tw, s, sc.extra)
		}
		got, stats := c.Finish()
		tw.check(t, i, got, stats)
		checkMetrics(t, i, got, sc.want)
		if stats != sc.stats {
			t.Errorf("scrape %d: stats = %+v, want %+v", i, stats, sc.stats)
		}
	}
}

func runAll(t *testing.T, cases []convCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { run(t, tc) })
	}
}

const (
	counter   = promtext.TypeCounter
	gauge     = promtext.TypeGauge
	untyped   = promtext.TypeUnknown
	histogram = promtext.TypeHistogram
	summary   = promtext.TypeSummary
	none      = promtext.SuffixNone
	total     = promtext.SuffixTotal
	created   = promtext.SuffixCreated
	bucketS   = promtext.SuffixBucket
	sumS      = promtext.SuffixSum
	countS    = promtext.SuffixCount
	ms        = uint64(1e6)
)

func one(n int) Stats { return Stats{Series: n, DataPoints: n} }

func TestCounter(t *testing.T) {
	createdAt := float64(t0.Unix()) - 100.25
	createdNs := ns(0) - 100_250*ms
	runAll(t, []convCase{
		{
			name: "text format keeps _total, start is the first observation",
			scrapes: []scrape{
				{
					samples: []*promtext.Sample{smp("http_requests_total", counter, none, 5, "code", "200")},
					want:    []*metricspb.Metric{sumM("http_requests_total", num(ns(0), ns(0), 5, "code", "200"))},
					stats:   one(1),
				},
				{
					samples: []*promtext.Sample{smp("http_requests_total", counter, none, 7, "code", "200")},
					want:    []*metricspb.Metric{sumM("http_requests_total", num(ns(0), ns(1), 7, "code", "200"))},
					stats:   one(1),
				},
			},
		},
		{
			name: "openmetrics counter is named after its family, start from _created",
			scrapes: []scrape{
				{
					samples: []*promtext.Sample{
						smp("foo", counter, total, 3, "a", "1"),
						smp("foo", counter, created, createdAt, "a", "1"),
					},
					want:  []*metricspb.Metric{sumM("foo", num(createdNs, ns(0), 3, "a", "1"))},
					stats: one(1),
				},
				{
					samples: []*promtext.Sample{
						smp("foo", counter, total, 4, "a", "1"),
						smp("foo", counter, created, createdAt, "a", "1"),
					},
					want:  []*metricspb.Metric{sumM("foo", num(createdNs, ns(1), 4, "a", "1"))},
					stats: one(1),
				},
			},
		},
		{
			name: "_created after the point is ignored",
			scrapes: []scrape{{
				samples: []*promtext.Sample{
					smp("foo", counter, total, 3),
					smp("foo", counter, created, float64(at(5).Unix())),
				},
				want:  []*metricspb.Metric{sumM("foo", num(ns(0), ns(0), 3))},
				stats: one(1),
			}},
		},
		{
			name: "reset: start becomes the point's time minus 1 ms",
			scrapes: []scrape{
				{
					samples: []*promtext.Sample{smp("c_total", counter, none, 10)},
					want:    []*metricspb.Metric{sumM("c_total", num(ns(0), ns(0), 10))},
					stats:   one(1),
				},
				{
					samples: []*promtext.Sample{smp("c_total", counter, none, 12)},
					want:    []*metricspb.Metric{sumM("c_total", num(ns(0), ns(1), 12))},
					stats:   one(1),
				},
				{
					samples: []*promtext.Sample{smp("c_total", counter, none, 3)},
					want:    []*metricspb.Metric{sumM("c_total", num(ns(2)-ms, ns(2), 3))},
					stats:   Stats{Series: 1, DataPoints: 1, Resets: 1},
				},
				{
					samples: []*promtext.Sample{smp("c_total", counter, none, 5)},
					want:    []*metricspb.Metric{sumM("c_total", num(ns(2)-ms, ns(3), 5))},
					stats:   one(1),
				},
			},
		},
		{
			name: "reset with a new _created",
			scrapes: []scrape{
				{
					samples: []*promtext.Sample{smp("foo", counter, total, 10), smp("foo", counter, created, createdAt)},
					want:    []*metricspb.Metric{sumM("foo", num(createdNs, ns(0), 10))},
					stats:   one(1),
				},
				{
					samples: []*promtext.Sample{smp("foo", counter, total, 1), smp("foo", counter, created, float64(at(1).Unix()-2))},
					want:    []*metricspb.Metric{sumM("foo", num(ns(1)-2000*ms, ns(1), 1))},
					stats:   Stats{Series: 1, DataPoints: 1, Resets: 1},
				},
			},
		},
		{
			name: "NaN is kept and does not take part in reset detection",
			scrapes: []scrape{
				{
					samples: []*promtext.Sample{smp("c_total", counter, none, 5)},
					want:    []*metricspb.Metric{sumM("c_total", num(ns(0), ns(0), 5))},
					stats:   one(1),
				},
				{
					samples: []*promtext.Sample{smp("c_total", counter, none, math.NaN())},
					want:    []*metricspb.Metric{sumM("c_total", num(ns(0), ns(1), math.NaN()))},
					stats:   one(1),
				},
				{
					samples: []*promtext.Sample{smp("c_total", counter, none, 6)},
					want:    []*metricspb.Metric{sumM("c_total", num(ns(0), ns(2), 6))},
					stats:   one(1),
				},
			},
		},
		{
			name: "timestamps: the sample's, and the start follows it",
			scrapes: []scrape{
				{
					samples: []*promtext.Sample{withTS(smp("c_total", counter, none, 1), 1_699_999_990_123)},
					want:    []*metricspb.Metric{sumM("c_total", num(1_699_999_990_123*ms, 1_699_999_990_123*ms, 1))},
					stats:   one(1),
				},
				{
					samples: []*promtext.Sample{withTS(smp("c_total", counter, none, 2), 1_700_000_005_000)},
					want:    []*metricspb.Metric{sumM("c_total", num(1_699_999_990_123*ms, 1_700_000_005_000*ms, 2))},
					stats:   one(1),
				},
				{
					// A timestamp before the start: the start is clamped.
					samples: []*promtext.Sample{withTS(smp("c_total", counter, none, 3), 1_600_000_000_000)},
					want:    []*metricspb.Metric{sumM("c_total", num(1_600_000_000_000*ms, 1_600_000_000_000*ms, 3))},
					stats:   one(1),
				},
			},
		},
		{
			name: "duplicate sample: the first is kept",
			scrapes: []scrape{{
				samples: []*promtext.Sample{smp("c_total", counter, none, 1, "a", "x"), smp("c_total", counter, none, 2, "a", "x")},
				want:    []*metricspb.Metric{sumM("c_total", num(ns(0), ns(0), 1, "a", "x"))},
				stats:   Stats{Series: 1, DataPoints: 1, DroppedInvalid: 1},
			}},
		},
		{
			name: "only _created, or a suffix that does not fit: dropped",
			scrapes: []scrape{{
				samples: []*promtext.Sample{
					smp("foo", counter, created, 1000),
					smp("bar", counter, bucketS, 1, "le", "1"),
				},
				stats: Stats{Series: 1, DroppedInvalid: 2},
			}},
		},
		{
			name: "staleness markers are dropped, the series is forgotten",
			scrapes: []scrape{
				{
					samples: []*promtext.Sample{smp("c_total", counter, none, 1)},
					want:    []*metricspb.Metric{sumM("c_total", num(ns(0), ns(0), 1))},
					stats:   one(1),
				},
				{
					samples: []*promtext.Sample{smp("c_total", counter, none, math.Float64frombits(staleNaN))},
					stats:   Stats{DroppedStale: 1},
				},
				{
					samples: []*promtext.Sample{smp("c_total", counter, none, 2)},
					want:    []*metricspb.Metric{sumM("c_total", num(ns(2), ns(2), 2))},
					stats:   one(1),
				},
			},
		},
	})
}

func TestGaugeLike(t *testing.T) {
	runAll(t, []convCase{
		{
			name: "gauge: no start time, empty labels omitted, le kept",
			scrapes: []scrape{{
				samples: []*promtext.Sample{
					smp("temp", gauge, none, 21.5, "room", "a", "empty", "", "le", "1"),
					smp("temp", gauge, none, math.NaN(), "room", "b"),
					smp("temp", gauge, none, -3, "room", "c", "empty", ""),
				},
				want: []*metricspb.Metric{gaugeM("temp", "gauge",
					num(0, ns(0), 21.5, "room", "a", "le", "1"),
					num(0, ns(0), math.NaN(), "room", "b"),
					num(0, ns(0), -3, "room", "c"),
				)},
				stats: one(3),
			}},
		},
		{
			name: "untyped, info and stateset become gauges; info keeps _info",
			scrapes: []scrape{{
				samples: []*promtext.Sample{
					smp("some_thing_total", untyped, none, 4),
					smp("build", promtext.TypeInfo, promtext.SuffixInfo, 1, "version", "1.2"),
					smp("state", promtext.TypeStateSet, none, 1, "state", "a"),
					smp("state", promtext.TypeStateSet, none, 0, "state", "b"),
				},
				want: []*metricspb.Metric{
					gaugeM("some_thing_total", "unknown", num(0, ns(0), 4)),
					gaugeM("build_info", "info", num(0, ns(0), 1, "version", "1.2")),
					gaugeM("state", "stateset", num(0, ns(0), 1, "state", "a"), num(0, ns(0), 0, "state", "b")),
				},
				stats: one(4),
			}},
		},
		{
			name: "gaugehistogram is dropped",
			scrapes: []scrape{{
				samples: []*promtext.Sample{
					smp("q", promtext.TypeGaugeHistogram, bucketS, 1, "le", "+Inf"),
					smp("q", promtext.TypeGaugeHistogram, promtext.SuffixGCount, 1),
					smp("q", promtext.TypeGaugeHistogram, promtext.SuffixGSum, 1),
				},
				stats: Stats{DroppedUnsupported: 3},
			}},
		},
		{
			name: "HELP and UNIT become description and UCUM unit",
			scrapes: []scrape{{
				samples: []*promtext.Sample{
					withMeta(smp("dur_seconds", gauge, none, 1), "How long.", "seconds"),
					withMeta(smp("rate", gauge, none, 2), "", "bytes_per_second"),
					withMeta(smp("odd", gauge, none, 3), "x", "furlongs"),
				},
				want: func() []*metricspb.Metric {
					a := gaugeM("dur_seconds", "gauge", num(0, ns(0), 1))
					a.Description, a.Unit = "How long.", "s"
					b := gaugeM("rate", "gauge", num(0, ns(0), 2))
					b.Unit = "By/s"
					c := gaugeM("odd", "gauge", num(0, ns(0), 3))
					c.Description, c.Unit = "x", "furlongs"
					return []*metricspb.Metric{a, b, c}
				}(),
				stats: one(3),
			}},
		},
		{
			name: "a sample contradicting its family's type is dropped",
			scrapes: []scrape{{
				samples: []*promtext.Sample{
					smp("x", gauge, none, 1, "a", "1"),
					smp("x", counter, none, 2, "a", "2"),
				},
				want:  []*metricspb.Metric{gaugeM("x", "gauge", num(0, ns(0), 1, "a", "1"))},
				stats: Stats{Series: 1, DataPoints: 1, DroppedInvalid: 1},
			}},
		},
		{
			name: "type change between scrapes restarts the series",
			scrapes: []scrape{
				{
					samples: []*promtext.Sample{smp("x", counter, none, 1)},
					want:    []*metricspb.Metric{sumM("x", num(ns(0), ns(0), 1))},
					stats:   one(1),
				},
				{
					samples: []*promtext.Sample{smp("x", gauge, none, 2)},
					want:    []*metricspb.Metric{gaugeM("x", "gauge", num(0, ns(1), 2))},
					stats:   one(1),
				},
				{
					samples: []*promtext.Sample{smp("x", counter, none, 3)},
					want:    []*metricspb.Metric{sumM("x", num(ns(2), ns(2), 3))},
					stats:   one(1),
				},
			},
		},
		{
			name: "duplicate label names are dropped",
			scrapes: []scrape{{
				samples: []*promtext.Sample{smp("x", gauge, none, 1, "a", "1", "a", "2")},
				stats:   Stats{DroppedInvalid: 1},
			}},
		},
	})
}

func TestLifecycle(t *testing.T) {
	runAll(t, []convCase{
		{
			name: "a series that disappears and comes back gets a new start time",
			scrapes: []scrape{
				{
					samples: []*promtext.Sample{smp("c_total", counter, none, 1, "s", "a"), smp("c_total", counter, none, 1, "s", "b")},
					want:    []*metricspb.Metric{sumM("c_total", num(ns(0), ns(0), 1, "s", "a"), num(ns(0), ns(0), 1, "s", "b"))},
					stats:   one(2),
				},
				{
					samples: []*promtext.Sample{smp("c_total", counter, none, 2, "s", "b")},
					want:    []*metricspb.Metric{sumM("c_total", num(ns(0), ns(1), 2, "s", "b"))},
					stats:   one(1),
				},
				{
					samples: []*promtext.Sample{smp("c_total", counter, none, 5, "s", "a"), smp("c_total", counter, none, 3, "s", "b")},
					want:    []*metricspb.Metric{sumM("c_total", num(ns(2), ns(2), 5, "s", "a"), num(ns(0), ns(2), 3, "s", "b"))},
					stats:   one(2),
				},
				{
					samples: nil,
					stats:   Stats{},
				},
				{
					samples: []*promtext.Sample{smp("c_total", counter, none, 3, "s", "b")},
					want:    []*metricspb.Metric{sumM("c_total", num(ns(4), ns(4), 3, "s", "b"))},
					stats:   one(1),
				},
			},
		},
		{
			name: "series may change their order between scrapes",
			scrapes: []scrape{
				{
					samples: []*promtext.Sample{
						smp("c_total", counter, none, 1, "s", "a"),
						smp("c_total", counter, none, 1, "s", "b"),
						smp("c_total", counter, none, 1, "s", "c"),
					},
					want: []*metricspb.Metric{sumM("c_total",
						num(ns(0), ns(0), 1, "s", "a"), num(ns(0), ns(0), 1, "s", "b"), num(ns(0), ns(0), 1, "s", "c"))},
					stats: one(3),
				},
				{
					samples: []*promtext.Sample{
						smp("c_total", counter, none, 2, "s", "c"),
						smp("c_total", counter, none, 2, "s", "d"),
						smp("c_total", counter, none, 2, "s", "a"),
						smp("c_total", counter, none, 2, "s", "b"),
					},
					want: []*metricspb.Metric{sumM("c_total",
						num(ns(0), ns(1), 2, "s", "c"), num(ns(1), ns(1), 2, "s", "d"),
						num(ns(0), ns(1), 2, "s", "a"), num(ns(0), ns(1), 2, "s", "b"))},
					stats: one(4),
				},
				{
					samples: []*promtext.Sample{
						smp("c_total", counter, none, 3, "s", "b"),
						smp("c_total", counter, none, 3, "s", "a"),
					},
					want: []*metricspb.Metric{sumM("c_total",
						num(ns(0), ns(2), 3, "s", "b"), num(ns(0), ns(2), 3, "s", "a"))},
					stats: one(2),
				},
			},
		},
		{
			name: "families keep the order of appearance",
			scrapes: []scrape{
				{
					samples: []*promtext.Sample{smp("b", gauge, none, 1), smp("a", gauge, none, 2)},
					want:    []*metricspb.Metric{gaugeM("b", "gauge", num(0, ns(0), 1)), gaugeM("a", "gauge", num(0, ns(0), 2))},
					stats:   one(2),
				},
				{
					samples: []*promtext.Sample{smp("a", gauge, none, 2), smp("b", gauge, none, 1)},
					want:    []*metricspb.Metric{gaugeM("a", "gauge", num(0, ns(1), 2)), gaugeM("b", "gauge", num(0, ns(1), 1))},
					stats:   one(2),
				},
			},
		},
	})
}

func TestSeriesLimit(t *testing.T) {
	histSamples := []*promtext.Sample{
		smp("h", histogram, bucketS, 1, "le", "+Inf"),
		smp("h", histogram, countS, 1),
	}
	runAll(t, []convCase{
		{
			name: "series over the limit are dropped, sample by sample",
			opts: Options{SeriesLimit: 2},
			scrapes: []scrape{
				{
					samples: append([]*promtext.Sample{
						smp("c_total", counter, none, 1, "s", "a"),
						smp("c_total", counter, none, 1, "s", "b"),
						smp("c_total", counter, none, 1, "s", "c"),
					}, histSamples...),
					want:  []*metricspb.Metric{sumM("c_total", num(ns(0), ns(0), 1, "s", "a"), num(ns(0), ns(0), 1, "s", "b"))},
					stats: Stats{Series: 2, DataPoints: 2, DroppedOverLimit: 3, LimitHit: true},
				},
				{
					// b is pushed out by c and forgotten; it restarts in scrape 2.
					samples: []*promtext.Sample{
						smp("c_total", counter, none, 2, "s", "c"),
						smp("c_total", counter, none, 2, "s", "a"),
						smp("c_total", counter, none, 2, "s", "b"),
					},
					want:  []*metricspb.Metric{sumM("c_total", num(ns(1), ns(1), 2, "s", "c"), num(ns(0), ns(1), 2, "s", "a"))},
					stats: Stats{Series: 2, DataPoints: 2, DroppedOverLimit: 1, LimitHit: true},
				},
				{
					samples: []*promtext.Sample{
						smp("c_total", counter, none, 3, "s", "a"),
						smp("c_total", counter, none, 3, "s", "b"),
					},
					want:  []*metricspb.Metric{sumM("c_total", num(ns(0), ns(2), 3, "s", "a"), num(ns(2), ns(2), 3, "s", "b"))},
					stats: one(2),
				},
			},
		},
		{
			name: "a histogram is one series",
			opts: Options{SeriesLimit: 1},
			scrapes: []scrape{{
				samples: histSamples,
				want:    []*metricspb.Metric{histM("h", hist2(ns(0), ns(0), 1, nil, nil, []uint64{1}))},
				stats:   one(1),
			}},
		},
	})
}

// hist2 is hist without attributes.
func hist2(start, t, count uint64, sum *float64, bounds []float64, counts []uint64) *metricspb.HistogramDataPoint {
	return hist(start, t, count, sum, bounds, counts)
}

func TestExtraLabels(t *testing.T) {
	extra := ls("cluster", "prod", "empty", "")
	runAll(t, []convCase{
		{
			name: "appended after the sample's labels",
			scrapes: []scrape{{
				samples: []*promtext.Sample{smp("g", gauge, none, 1, "pod", "p")},
				extra:   extra,
				want:    []*metricspb.Metric{gaugeM("g", "gauge", num(0, ns(0), 1, "pod", "p", "cluster", "prod"))},
				stats:   one(1),
			}},
		},
		{
			name: "an extra label wins, the exposed one becomes exported_",
			scrapes: []scrape{
				{
					samples: []*promtext.Sample{smp("c_total", counter, none, 1, "cluster", "own", "pod", "p")},
					extra:   extra,
					want: []*metricspb.Metric{sumM("c_total",
						num(ns(0), ns(0), 1, "exported_cluster", "own", "pod", "p", "cluster", "prod"))},
					stats: one(1),
				},
				{
					samples: []*promtext.Sample{smp("c_total", counter, none, 2, "cluster", "own", "pod", "p")},
					extra:   extra,
					want: []*metricspb.Metric{sumM("c_total",
						num(ns(0), ns(1), 2, "exported_cluster", "own", "pod", "p", "cluster", "prod"))},
					stats: one(1),
				},
			},
		},
		{
			name: "exported_ names never clash",
			scrapes: []scrape{{
				samples: []*promtext.Sample{smp("g", gauge, none, 1, "a", "1", "exported_a", "2")},
				extra:   ls("a", "x", "exported_a", "y"),
				want: []*metricspb.Metric{gaugeM("g", "gauge",
					num(0, ns(0), 1, "exported_exported_a", "1", "exported_exported_exported_a", "2", "a", "x", "exported_a", "y"))},
				stats: one(1),
			}},
		},
		{
			name: "other extra labels are another series",
			scrapes: []scrape{
				{
					samples: []*promtext.Sample{smp("c_total", counter, none, 1)},
					extra:   ls("rule", "a"),
					want:    []*metricspb.Metric{sumM("c_total", num(ns(0), ns(0), 1, "rule", "a"))},
					stats:   one(1),
				},
				{
					samples: []*promtext.Sample{smp("c_total", counter, none, 2)},
					extra:   ls("rule", "b"),
					want:    []*metricspb.Metric{sumM("c_total", num(ns(1), ns(1), 2, "rule", "b"))},
					stats:   one(1),
				},
			},
		},
	})
}

// TestNewSamples counts the samples of series new in a scrape, as Prometheus'
// scrape_series_added: all on the first scrape (each histogram sample), none
// when nothing changed, the samples of the series that appeared.
func TestNewSamples(t *testing.T) {
	c := New(Options{})
	hist := h("lat", []string{"0.1", "1", "+Inf"}, []float64{1, 2, 3}, 4, 3, "k", "v") // 3 buckets, _sum, _count
	scrape := func(i int, samples []*promtext.Sample) int {
		c.Begin(at(i))
		for _, s := range samples {
			c.Add(s, nil)
		}
		n := c.NewSamples()
		c.Finish()
		return n
	}
	first := append(cadvisorLike(3), hist...)
	if got, want := scrape(0, first), len(first); got != want {
		t.Errorf("first scrape: %d new samples, want %d", got, want)
	}
	if got := scrape(1, first); got != 0 {
		t.Errorf("same scrape again: %d new samples, want 0", got)
	}
	second := append(cadvisorLike(4), hist...)
	if got, want := scrape(2, second), len(cadvisorLike(4))-len(cadvisorLike(3)); got != want {
		t.Errorf("one container more: %d new samples, want %d", got, want)
	}
}

// TestTargetLabels: a sample's own job or instance label is kept as
// exported_job / exported_instance (exported_exported_job when that is taken),
// as a direct Prometheus scrape keeps it.
func TestTargetLabels(t *testing.T) {
	c := New(Options{TargetLabels: []string{"job", "instance"}})
	c.Begin(at(0))
	c.Add(smp("errors", promtext.TypeGauge, promtext.SuffixNone, 3, "instance", "other:9100", "job", "other", "exported_job", "x"), nil)
	ms, _ := c.Finish()
	got := map[string]string{}
	for _, kv := range ms[0].GetGauge().GetDataPoints()[0].GetAttributes() {
		got[kv.GetKey()] = kv.GetValue().GetStringValue()
	}
	want := map[string]string{"exported_instance": "other:9100", "exported_exported_job": "other", "exported_job": "x"}
	if !maps.Equal(got, want) {
		t.Errorf("attributes %v, want %v", got, want)
	}
}
