package promotlp

import (
	"math"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	metricspb "go.opentelemetry.io/proto/otlp/metrics/v1"

	"github.com/trellis-garden/trellis/internal/promtext"
)

// scrapeOnce runs one scrape of samples at at(i).
func scrapeOnce(c *Converter, i int, samples ...*promtext.Sample) ([]*metricspb.Metric, Stats) {
	c.Begin(at(i))
	for _, s := range samples {
		c.Add(s, nil)
	}
	return c.Finish()
}

func TestHashCollision(t *testing.T) {
	c := New(Options{})
	scrapeOnce(c, 0, smp("c_total", counter, none, 1, "s", "a"))
	// Plant series "a" under the hash of series "b", as a collision would.
	f := c.families["c_total"]
	hb := c.identity(f, ls("s", "b"), nil)
	var a *series
	for h, st := range c.series {
		a = st
		delete(c.series, h)
	}
	c.series[hb] = a

	// b must not be taken for a (which started at scrape 0).
	c.Begin(at(1))
	c.Add(smp("c_total", counter, none, 2, "s", "b"), nil)
	if n := chainLen(c.series[hb]); n != 2 {
		t.Fatalf("chain under the shared hash has %d series, want 2 (planted a, b)", n)
	}
	got, _ := c.Finish()
	checkMetrics(t, 1, got, []*metricspb.Metric{sumM("c_total", num(ns(1), ns(1), 2, "s", "b"))})
	if c.nSeries != 1 || len(c.series) != 1 || chainLen(c.series[hb]) != 1 {
		t.Fatalf("after sweep: %d series in %d slots, want 1", c.nSeries, len(c.series))
	}

	// The planted a was forgotten: a comes back as a new series.
	got, _ = scrapeOnce(c, 2, smp("c_total", counter, none, 3, "s", "b"), smp("c_total", counter, none, 3, "s", "a"))
	checkMetrics(t, 2, got, []*metricspb.Metric{sumM("c_total", num(ns(1), ns(2), 3, "s", "b"), num(ns(2), ns(2), 3, "s", "a"))})
}

func chainLen(st *series) int {
	n := 0
	for ; st != nil; st = st.next {
		n++
	}
	return n
}

func TestOutputIsNotReused(t *testing.T) {
	c := New(Options{})
	first, _ := scrapeOnce(c, 0,
		smp("c_total", counter, none, 1, "s", "a"),
		smp("g", gauge, none, 1),
		smp("h", histogram, bucketS, 1, "le", "1"),
		smp("h", histogram, countS, 1),
		smp("s", summary, none, 1, "quantile", "0.5"),
		smp("s", summary, countS, 1),
	)
	keep := make([]*metricspb.Metric, len(first))
	for i, m := range first {
		keep[i] = proto.Clone(m).(*metricspb.Metric)
	}
	scrapeOnce(c, 1,
		smp("c_total", counter, none, 5, "s", "a"),
		smp("g", gauge, none, 5),
		smp("h", histogram, bucketS, 3, "le", "1"),
		smp("h", histogram, countS, 5),
		smp("s", summary, none, 5, "quantile", "0.5"),
		smp("s", summary, countS, 5),
	)
	checkMetrics(t, 0, first, keep)
}

func TestInvalidUTF8(t *testing.T) {
	c := New(Options{})
	bad := smp("g\xff", gauge, none, 1, "k\xfe", "v\xff")
	bad.Help = []byte("help \xff")
	for i := range 2 {
		got, stats := scrapeOnce(c, i, bad)
		if stats.Series != 1 || stats.DataPoints != 1 {
			t.Fatalf("stats %+v", stats)
		}
		if _, err := proto.Marshal(got[0]); err != nil {
			t.Fatalf("marshal: %v", err)
		}
		want := gaugeM("g\uFFFD", "gauge", num(0, ns(i), 1, "k\uFFFD", "v\uFFFD"))
		want.Description = "help \uFFFD"
		checkMetrics(t, i, got, []*metricspb.Metric{want})
	}
	if c.nSeries != 1 {
		t.Fatalf("%d series, want 1", c.nSeries)
	}

	// Names that differ only in invalid bytes would become one key.
	got, stats := scrapeOnce(c, 2, smp("g", gauge, none, 1, "k\xfe", "1", "k\xff", "2"))
	if len(got) != 0 || stats.DroppedInvalid != 1 || len(c.encs) != 0 {
		t.Fatalf("got %d metrics, stats %+v, %d interned attribute sets", len(got), stats, len(c.encs))
	}
}

func TestAttributesAreSharedAndReleased(t *testing.T) {
	c := New(Options{})
	scrapeOnce(c, 0,
		smp("a_total", counter, none, 1, "ns", "kube-system", "pod", "p1"),
		smp("b", gauge, none, 1, "ns", "kube-system", "pod", "p1"),
		smp("b", gauge, none, 1, "ns", "kube-system", "pod", "p2"),
	)
	// a_total and b{p1} share their encoded attributes.
	if len(c.encs) != 2 {
		t.Errorf("%d interned attribute sets, want 2", len(c.encs))
	}
	scrapeOnce(c, 1, smp("b", gauge, none, 1, "ns", "kube-system", "pod", "p2"))
	if len(c.encs) != 1 {
		t.Errorf("after p1 left: %d interned attribute sets, want 1", len(c.encs))
	}
	for _, e := range c.encs {
		if e.refs != 1 {
			t.Errorf("p2's attributes referenced %d times, want 1", e.refs)
		}
	}
	scrapeOnce(c, 2)
	if len(c.encs) != 0 || len(c.series) != 0 || len(c.families) != 0 || c.nSeries != 0 {
		t.Errorf("empty scrape left %d attribute sets, %d series, %d families", len(c.encs), len(c.series), len(c.families))
	}
}

func TestBeginTwiceAndAddWithoutBegin(t *testing.T) {
	c := New(Options{})
	c.Add(smp("g", gauge, none, 1), nil) // before any Begin: must not panic
	c.Add(nil, nil)
	c.Begin(at(0))
	c.Add(smp("g", gauge, none, 1), nil)
	c.Begin(at(1)) // abandoned scrape 0
	c.Add(smp("g", gauge, none, 2), nil)
	got, stats := c.Finish()
	checkMetrics(t, 1, got, []*metricspb.Metric{gaugeM("g", "gauge", num(0, ns(1), 2))})
	if stats != one(1) {
		t.Errorf("stats %+v", stats)
	}
}

func TestTimeClamps(t *testing.T) {
	c := New(Options{})
	c.Begin(time.Time{}) // before the epoch: 0
	c.Add(smp("g", gauge, none, 1), nil)
	c.Add(withTS(smp("c_total", counter, none, 1), -5), nil)
	c.Add(withTS(smp("d_total", counter, none, 1), math.MaxInt64), nil)
	got, _ := c.Finish()
	const maxNs = uint64(math.MaxInt64)
	checkMetrics(t, 0, got, []*metricspb.Metric{
		gaugeM("g", "gauge", num(0, 0, 1)),
		sumM("c_total", num(0, 0, 1)),
		sumM("d_total", num(maxNs, maxNs, 1)),
	})
	for _, sec := range []float64{0, -1, math.NaN(), math.Inf(1), 1e19} {
		if _, ok := nsFromSeconds(sec); ok {
			t.Errorf("nsFromSeconds(%v) accepted", sec)
		}
	}
	if got := nsFromTime(time.Unix(1<<40, 0)); got != maxNs {
		t.Errorf("nsFromTime(far future) = %d", got)
	}
}

func TestUCUM(t *testing.T) {
	for in, want := range map[string]string{
		"":                      "",
		"seconds":               "s",
		"bytes":                 "By",
		"meters_per_second":     "m/s",
		"bytes_per_hour":        "By/h",
		"celsius":               "Cel",
		"ratio":                 "1",
		"widgets_per_fortnight": "widgets/fortnight",
		"widgets_per_":          "widgets",
	} {
		if got := ucum(in); got != want {
			t.Errorf("ucum(%q) = %q, want %q", in, got, want)
		}
	}
}
