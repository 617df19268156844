package promotlp

import (
	"encoding/binary"
	"math"
	"testing"

	"google.golang.org/protobuf/proto"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	metricspb "go.opentelemetry.io/proto/otlp/metrics/v1"

	"github.com/trellis-garden/trellis/internal/promtext"
)

// fuzzReader hands out the fuzz input byte by byte (zeros once exhausted).
type fuzzReader struct{ b []byte }

func (r *fuzzReader) done() bool { return len(r.b) == 0 }

func (r *fuzzReader) next() byte {
	if len(r.b) == 0 {
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

func (r *fuzzReader) pick(n int) int { return int(r.next()) % n }

var (
	fuzzFamilies = []string{"a", "b", "h", "s", "a_total", ""}
	fuzzNames    = []string{"x", "y", "le", "quantile", "exported_x", "", "k\xff", "k\xfe"}
	fuzzValues   = []string{"", "1", "0.5", "+Inf", "-Inf", "NaN", "2", "v\xfe", "0.99"}
	fuzzFloats   = []float64{0, 1, 2, 3, 0.5, 7.9, -1, math.NaN(), math.Float64frombits(staleNaN), math.Inf(1), math.Inf(-1), 1e300, 1.7e9}
	fuzzExtras   = [][]promtext.Label{nil, ls("x", "e"), ls("cluster", "c", "x", "")}
)

// FuzzConverter feeds arbitrary sample sequences over several scrapes and
// checks that the output is always valid OTLP.
func FuzzConverter(f *testing.F) {
	f.Add([]byte{2, 1, 2, 3, 0, 1, 2, 0, 3, 1, 5, 0, 16, 1, 2, 3, 0, 1, 2, 0, 3, 1, 5, 0})
	f.Add([]byte{0, 3, 3, 2, 1, 2, 3, 1, 5, 0, 3, 3, 3, 1, 2, 3, 1, 5, 1, 3, 3, 4, 0, 2, 0, 16, 3, 3, 2, 1, 2, 3, 1, 2, 0})
	f.Add([]byte{1, 4, 5, 0, 1, 3, 2, 0, 4, 5, 3, 0, 0, 7, 4, 5, 4, 0, 0, 9, 0, 4, 5, 0, 1, 3, 8, 0, 2})
	f.Add([]byte{5, 1, 0, 1, 0, 2, 0, 1, 1, 6, 1, 2, 0, 33, 1, 1, 0, 7, 0, 1, 1, 12, 2, 0, 6})
	// A valid histogram and summary over two scrapes.
	f.Add([]byte{0,
		1, 2, 3, 4, 0, 1, 0, 1, 2, 3, 2, 1, 2, 3, 1, 0, 1, 3, 5, 0, 1, 3, 2, 4, 0, 1, 3, 5, 4, 0, 1, 0, 16,
		1, 2, 3, 4, 0, 2, 0, 1, 2, 3, 2, 1, 2, 3, 2, 0, 1, 3, 5, 0, 1, 3, 2, 4, 0, 1, 3, 5, 4, 0, 2, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		r := &fuzzReader{b: data}
		limit := r.pick(4)
		c := New(Options{SeriesLimit: limit})
		// A twin finished with FinishEncoded must give the same scrapes.
		tw := newEncodedTwin(t, Options{SeriesLimit: limit}, len(data)%2 == 0)
		scrape := 0
		c.Begin(at(0))
		tw.begin(at(0))
		var name, fam []byte
		var labels []promtext.Label
		for !r.done() {
			op := r.next()
			if op%16 == 0 {
				checkScrape(t, c, tw, scrape, limit)
				scrape++
				c.Begin(at(scrape))
				tw.begin(at(scrape))
				continue
			}
			// Build the sample in reused buffers, as the parser does.
			fam = append(fam[:0], fuzzFamilies[r.pick(len(fuzzFamilies))]...)
			s := &promtext.Sample{
				Type:   promtext.MetricType(r.pick(int(promtext.TypeStateSet) + 2)),
				Suffix: promtext.Suffix(r.pick(int(promtext.SuffixInfo) + 2)),
			}
			name = append(append(name[:0], fam...), s.Suffix.String()...)
			s.Family, s.Name = fam, name
			labels = labels[:0]
			for range r.pick(4) {
				labels = append(labels, promtext.Label{
					Name:  []byte(fuzzNames[r.pick(len(fuzzNames))]),
					Value: []byte(fuzzValues[r.pick(len(fuzzValues))]),
				})
			}
			s.Labels = labels
			if v := r.pick(len(fuzzFloats) + 1); v < len(fuzzFloats) {
				s.Value = fuzzFloats[v]
			} else {
				var b [8]byte
				for i := range b {
					b[i] = r.next()
				}
				s.Value = math.Float64frombits(binary.LittleEndian.Uint64(b[:]))
			}
			if op&0x10 != 0 {
				s.TimestampMs, s.HasTimestamp = int64(at(scrape).UnixMilli())+int64(int8(r.next()))*1000, true
			}
			if op&0x20 != 0 {
				s.Help, s.Unit = []byte("help"), []byte("seconds")
			}
			addBoth(c, tw, s, fuzzExtras[r.pick(len(fuzzExtras))])
			// The converter must have copied what it keeps.
			clobber(fam, name)
			for _, l := range labels {
				clobber(l.Name, l.Value)
			}
		}
		checkScrape(t, c, tw, scrape, limit)
	})
}

// clobber overwrites buffers the parser would reuse.
func clobber(bs ...[]byte) {
	for _, b := range bs {
		for i := range b {
			b[i] = 'Z'
		}
	}
}

// checkScrape finishes the scrape and checks its output.
func checkScrape(t *testing.T, c *Converter, tw *encodedTwin, step, limit int) {
	t.Helper()
	ms, stats := c.Finish()
	tw.check(t, step, ms, stats)
	if limit > 0 && stats.Series > limit {
		t.Fatalf("%d series over the limit %d", stats.Series, limit)
	}
	points := 0
	for _, m := range ms {
		if _, err := proto.Marshal(m); err != nil {
			t.Fatalf("metric %q does not marshal: %v", m.Name, err)
		}
		switch d := m.Data.(type) {
		case *metricspb.Metric_Gauge:
			for _, dp := range d.Gauge.DataPoints {
				points++
				checkAttrs(t, m.Name, dp.Attributes)
				if dp.StartTimeUnixNano != 0 {
					t.Fatalf("%s: gauge with a start time", m.Name)
				}
			}
		case *metricspb.Metric_Sum:
			for _, dp := range d.Sum.DataPoints {
				points++
				checkAttrs(t, m.Name, dp.Attributes)
				checkTimes(t, m.Name, dp.StartTimeUnixNano, dp.TimeUnixNano)
			}
		case *metricspb.Metric_Histogram:
			for _, dp := range d.Histogram.DataPoints {
				points++
				checkAttrs(t, m.Name, dp.Attributes)
				checkTimes(t, m.Name, dp.StartTimeUnixNano, dp.TimeUnixNano)
				checkHistogram(t, m.Name, dp)
			}
		case *metricspb.Metric_Summary:
			for _, dp := range d.Summary.DataPoints {
				points++
				checkAttrs(t, m.Name, dp.Attributes)
				checkTimes(t, m.Name, dp.StartTimeUnixNano, dp.TimeUnixNano)
				for i, q := range dp.QuantileValues {
					if !(q.Quantile >= 0 && q.Quantile <= 1) || i > 0 && q.Quantile <= dp.QuantileValues[i-1].Quantile {
						t.Fatalf("%s: quantiles %v", m.Name, dp.QuantileValues)
					}
				}
			}
		default:
			t.Fatalf("%s: unexpected data %T", m.Name, d)
		}
	}
	if points != stats.DataPoints {
		t.Fatalf("%d points, stats say %d", points, stats.DataPoints)
	}
}

func checkTimes(t *testing.T, name string, start, at uint64) {
	t.Helper()
	if start > at {
		t.Fatalf("%s: start %d after time %d", name, start, at)
	}
}

func checkAttrs(t *testing.T, name string, attrs []*commonpb.KeyValue) {
	t.Helper()
	seen := make(map[string]bool, len(attrs))
	for _, kv := range attrs {
		if seen[kv.Key] {
			t.Fatalf("%s: attribute %q twice", name, kv.Key)
		}
		seen[kv.Key] = true
		if stringValue(kv) == "" {
			t.Fatalf("%s: empty attribute %q", name, kv.Key)
		}
	}
}

func checkHistogram(t *testing.T, name string, dp *metricspb.HistogramDataPoint) {
	t.Helper()
	if len(dp.BucketCounts) != len(dp.ExplicitBounds)+1 {
		t.Fatalf("%s: %d counts for %d bounds", name, len(dp.BucketCounts), len(dp.ExplicitBounds))
	}
	for i, b := range dp.ExplicitBounds {
		if math.IsNaN(b) || math.IsInf(b, 1) || i > 0 && b <= dp.ExplicitBounds[i-1] {
			t.Fatalf("%s: bounds %v", name, dp.ExplicitBounds)
		}
	}
	var sum uint64
	for _, n := range dp.BucketCounts {
		if n > dp.Count {
			t.Fatalf("%s: bucket count %d above count %d", name, n, dp.Count)
		}
		sum += n
	}
	if sum != dp.Count {
		t.Fatalf("%s: bucket counts %v add up to %d, count %d", name, dp.BucketCounts, sum, dp.Count)
	}
}
