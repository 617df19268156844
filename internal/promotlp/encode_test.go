package promotlp

import (
	"bytes"
	"testing"
	"time"

	"github.com/klauspost/compress/flate"
	"google.golang.org/protobuf/proto"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	metricspb "go.opentelemetry.io/proto/otlp/metrics/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"

	"github.com/trellis-garden/trellis/internal/promtext"
)

var (
	testResource = &resourcepb.Resource{Attributes: attrs("service.name", "job", "server.port", "")}
	testScope    = &commonpb.InstrumentationScope{Name: "scope", Version: "1.0"}
)

// encodedTwin is a second Converter fed the same samples as a reference one
// and finished with FinishEncoded, into a buffer reused across scrapes.
type encodedTwin struct {
	c        *Converter
	chunked  *Converter // a third one, finished with FinishChunks
	buf      []byte
	chunkBuf []byte
	resource []byte
	scope    []byte
	res      *resourcepb.Resource
	sc       *commonpb.InstrumentationScope
}

// newEncodedTwin returns a twin; withMessages false leaves out the resource
// and scope fields.
func newEncodedTwin(t testing.TB, o Options, withMessages bool) *encodedTwin {
	tw := &encodedTwin{c: New(o), chunked: New(o)}
	if withMessages {
		var err error
		if tw.resource, err = proto.Marshal(testResource); err != nil {
			t.Fatal(err)
		}
		if tw.scope, err = proto.Marshal(testScope); err != nil {
			t.Fatal(err)
		}
		tw.res, tw.sc = testResource, testScope
	}
	return tw
}

// check finishes the twin's scrape and compares it with what the reference
// converter's Finish returned: same stats, and the encoding unmarshals into
// the MetricsData the scraper would build from ms (and is byte for byte what
// deterministic proto.Marshal gives).
func (tw *encodedTwin) check(t testing.TB, step int, ms []*metricspb.Metric, stats Stats) {
	t.Helper()
	prefix := []byte{0xde, 0xad}
	tw.buf = append(tw.buf[:0], prefix...)
	out, encStats := tw.c.FinishEncoded(tw.buf, tw.resource, tw.scope)
	tw.buf = out
	if encStats != stats {
		t.Fatalf("scrape %d: FinishEncoded stats %+v, Finish stats %+v", step, encStats, stats)
	}
	if !bytes.Equal(out[:len(prefix)], prefix) {
		t.Fatalf("scrape %d: dst prefix overwritten", step)
	}
	want := &metricspb.MetricsData{}
	if len(ms) > 0 {
		want.ResourceMetrics = []*metricspb.ResourceMetrics{{
			Resource:     tw.res,
			ScopeMetrics: []*metricspb.ScopeMetrics{{Scope: tw.sc, Metrics: ms}},
		}}
	}
	got := &metricspb.MetricsData{}
	if err := proto.Unmarshal(out[len(prefix):], got); err != nil {
		t.Fatalf("scrape %d: FinishEncoded output does not unmarshal: %v", step, err)
	}
	if !proto.Equal(got, want) {
		t.Fatalf("scrape %d: FinishEncoded differs from Finish\ngot:\n%v\nwant:\n%v", step, got, want)
	}
	wantBytes, err := proto.MarshalOptions{Deterministic: true}.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out[len(prefix):], wantBytes) {
		t.Fatalf("scrape %d: FinishEncoded bytes differ from proto.Marshal\ngot  %x\nwant %x", step, out[len(prefix):], wantBytes)
	}
	tw.checkChunks(t, step, want, stats)
}

// chunkLimits are the ChunkOptions the chunked twin cycles through.
var chunkLimits = []ChunkOptions{{MaxDataPoints: 1}, {MaxDataPoints: 2}, {MaxBytes: 1}, {MaxBytes: 300}, {MaxDataPoints: 3, MaxBytes: 500}, {}}

// checkChunks finishes the chunked twin's scrape and checks that each chunk
// is a MetricsData within the limits and that together they hold want's
// data points (metrics in order of first appearance, each metric's points in
// order), with the same stats.
func (tw *encodedTwin) checkChunks(t testing.TB, step int, want *metricspb.MetricsData, stats Stats) {
	t.Helper()
	o := chunkLimits[step%len(chunkLimits)]
	merged := &metricspb.MetricsData{}
	points := 0
	buf, cstats, err := tw.chunked.FinishChunks(tw.chunkBuf, tw.resource, tw.scope, o, func(chunk []byte, n int) error {
		if n <= 0 || o.MaxDataPoints > 0 && n > o.MaxDataPoints || o.MaxBytes > 0 && n > 1 && len(chunk) > o.MaxBytes {
			t.Fatalf("scrape %d: chunk of %d points, %d bytes: limits %+v", step, n, len(chunk), o)
		}
		md := &metricspb.MetricsData{}
		if err := proto.Unmarshal(chunk, md); err != nil {
			t.Fatalf("scrape %d: chunk does not unmarshal: %v", step, err)
		}
		if got := countDataPoints(md); got != n {
			t.Fatalf("scrape %d: chunk holds %d data points, emit says %d", step, got, n)
		}
		points += n
		merged.ResourceMetrics = append(merged.ResourceMetrics, md.ResourceMetrics...)
		return nil
	})
	tw.chunkBuf = buf
	if err != nil || cstats != stats || points != stats.DataPoints {
		t.Fatalf("scrape %d: FinishChunks = %v, stats %+v (%d points), Finish stats %+v", step, err, cstats, points, stats)
	}
	if got := joinChunks(merged); !proto.Equal(got, want) {
		t.Fatalf("scrape %d: chunks (%+v) differ from Finish\ngot:\n%v\nwant:\n%v", step, o, got, want)
	}
}

// countDataPoints counts the data points of md.
func countDataPoints(md *metricspb.MetricsData) int {
	n := 0
	for _, rm := range md.ResourceMetrics {
		for _, sm := range rm.ScopeMetrics {
			for _, m := range sm.Metrics {
				switch d := m.Data.(type) {
				case *metricspb.Metric_Gauge:
					n += len(d.Gauge.DataPoints)
				case *metricspb.Metric_Sum:
					n += len(d.Sum.DataPoints)
				case *metricspb.Metric_Histogram:
					n += len(d.Histogram.DataPoints)
				case *metricspb.Metric_Summary:
					n += len(d.Summary.DataPoints)
				}
			}
		}
	}
	return n
}

// joinChunks undoes the chunking: one ResourceMetrics, and a metric split
// over consecutive chunks joined into one.
func joinChunks(md *metricspb.MetricsData) *metricspb.MetricsData {
	if len(md.ResourceMetrics) == 0 {
		return md
	}
	out := &metricspb.ResourceMetrics{Resource: md.ResourceMetrics[0].Resource}
	sm := &metricspb.ScopeMetrics{Scope: md.ResourceMetrics[0].ScopeMetrics[0].Scope}
	out.ScopeMetrics = []*metricspb.ScopeMetrics{sm}
	byName := map[string]*metricspb.Metric{}
	for _, rm := range md.ResourceMetrics {
		for _, m := range rm.ScopeMetrics[0].Metrics {
			prev := byName[m.Name]
			if prev == nil {
				byName[m.Name] = m
				sm.Metrics = append(sm.Metrics, m)
				continue
			}
			switch d := prev.Data.(type) {
			case *metricspb.Metric_Gauge:
				d.Gauge.DataPoints = append(d.Gauge.DataPoints, m.GetGauge().GetDataPoints()...)
			case *metricspb.Metric_Sum:
				d.Sum.DataPoints = append(d.Sum.DataPoints, m.GetSum().GetDataPoints()...)
			case *metricspb.Metric_Histogram:
				d.Histogram.DataPoints = append(d.Histogram.DataPoints, m.GetHistogram().GetDataPoints()...)
			case *metricspb.Metric_Summary:
				d.Summary.DataPoints = append(d.Summary.DataPoints, m.GetSummary().GetDataPoints()...)
			}
		}
	}
	return &metricspb.MetricsData{ResourceMetrics: []*metricspb.ResourceMetrics{out}}
}

// TestFinishEncodedAllocs checks that the steady state of a scrape finished
// with FinishEncoded does not allocate.
func TestFinishEncodedAllocs(t *testing.T) {
	samples := cadvisorLike(20)
	samples = append(samples, h("lat", []string{"0.1", "1", "+Inf"}, []float64{1, 2, 3}, 4, 3, "k", "v")...)
	samples = append(samples, q("rt", []string{"0.5", "0.9"}, []float64{1, 2}, 4, 3, "k", "v")...)
	tw := newEncodedTwin(t, Options{}, true)
	extra := ls("cluster", "c")
	i := 0
	scrape := func() {
		tw.c.Begin(at(i))
		for _, s := range samples {
			tw.c.Add(s, extra)
		}
		tw.buf, _ = tw.c.FinishEncoded(tw.buf[:0], tw.resource, tw.scope)
		i++
	}
	scrape()
	scrape()
	if n := testing.AllocsPerRun(10, scrape); n != 0 {
		t.Errorf("%v allocations per steady-state scrape, want 0", n)
	}
}

// TestFinishEncodedTwoResources checks that results appended to one buffer
// form a MetricsData with one ResourceMetrics each.
func TestFinishEncodedTwoResources(t *testing.T) {
	tw := newEncodedTwin(t, Options{}, true)
	var buf []byte
	for i := range 2 {
		tw.c.Begin(at(i))
		tw.c.Add(smp("c_total", counter, none, float64(i+1), "s", "a"), nil)
		buf, _ = tw.c.FinishEncoded(buf, tw.resource, tw.scope)
	}
	var md metricspb.MetricsData
	if err := proto.Unmarshal(buf, &md); err != nil {
		t.Fatal(err)
	}
	if len(md.ResourceMetrics) != 2 {
		t.Fatalf("%d resource metrics, want 2", len(md.ResourceMetrics))
	}
	want := sumM("c_total", num(ns(0), ns(1), 2, "s", "a"))
	if got := md.ResourceMetrics[1].ScopeMetrics[0].Metrics; len(got) != 1 || !proto.Equal(got[0], want) {
		t.Fatalf("second scrape: %v", got)
	}
}

// addBoth adds a sample to the reference converter and its twin.
func addBoth(c *Converter, tw *encodedTwin, s *promtext.Sample, extra []promtext.Label) {
	c.Add(s, extra)
	tw.c.Add(s, extra)
	tw.chunked.Add(s, extra)
}

// begin begins a scrape on the twin's converters.
func (tw *encodedTwin) begin(t time.Time) {
	tw.c.Begin(t)
	tw.chunked.Begin(t)
}

// TestEncodedAttributesAreSharedAndReleased checks that series with the same
// labels share their encoded attributes and that forgotten series release them.
func TestEncodedAttributesAreSharedAndReleased(t *testing.T) {
	c := New(Options{})
	c.Begin(at(0))
	c.Add(smp("a_total", counter, none, 1, "pod", "p"), nil)
	c.Add(smp("b", gauge, none, 1, "pod", "p"), nil)
	c.Add(smp("h", histogram, countS, 1, "pod", "p"), nil)
	c.Add(smp("c", gauge, none, 1, "pod", "q"), nil)
	c.FinishEncoded(nil, nil, nil)
	// a_total and b share; the histogram's field number differs; c has other labels.
	if got := len(c.encs); got != 3 {
		t.Fatalf("%d encoded attribute sets, want 3", got)
	}
	c.Begin(at(1))
	c.Add(smp("b", gauge, none, 1, "pod", "p"), nil)
	c.FinishEncoded(nil, nil, nil)
	if got := len(c.encs); got != 1 {
		t.Fatalf("%d encoded attribute sets after forgetting series, want 1", got)
	}
	c.Begin(at(2))
	c.FinishEncoded(nil, nil, nil)
	if got := len(c.encs); got != 0 {
		t.Fatalf("%d encoded attribute sets after forgetting every series, want 0", got)
	}
}

// TestFinishChunksAllocs checks that the steady state of a scrape finished
// with FinishChunks does not allocate.
func TestFinishChunksAllocs(t *testing.T) {
	samples := cadvisorLike(20)
	samples = append(samples, h("lat", []string{"0.1", "1", "+Inf"}, []float64{1, 2, 3}, 4, 3, "k", "v")...)
	tw := newEncodedTwin(t, Options{}, true)
	i := 0
	emit := func([]byte, int) error { return nil }
	scrape := func() {
		tw.chunked.Begin(at(i))
		for _, s := range samples {
			tw.chunked.Add(s, nil)
		}
		tw.chunkBuf, _, _ = tw.chunked.FinishChunks(tw.chunkBuf, tw.resource, tw.scope, ChunkOptions{MaxDataPoints: 7}, emit)
		i++
	}
	scrape()
	scrape()
	if n := testing.AllocsPerRun(10, scrape); n != 0 {
		t.Errorf("%v allocations per steady-state scrape, want 0", n)
	}
}

// TestFinishChunksEmitError checks that an error from emit stops the
// chunks, is returned, and leaves the converter finished.
func TestFinishChunksEmitError(t *testing.T) {
	c := New(Options{})
	c.Begin(at(0))
	for _, s := range cadvisorLike(5) {
		c.Add(s, nil)
	}
	calls := 0
	stop := errTest("disk full")
	_, stats, err := c.FinishChunks(nil, nil, nil, ChunkOptions{MaxDataPoints: 2}, func([]byte, int) error {
		calls++
		return stop
	})
	if err != stop || calls != 1 || stats.DataPoints == 0 {
		t.Fatalf("FinishChunks = %v after %d calls, stats %+v", err, calls, stats)
	}
	c.Begin(at(1))
	if _, stats := c.FinishEncoded(nil, nil, nil); stats.DataPoints != 0 {
		t.Fatalf("next scrape: %+v", stats)
	}
}

type errTest string

func (e errTest) Error() string { return string(e) }

// TestFinishChunksPartial checks that a partial scrape keeps the series it
// did not see, with their start times, and that a complete one forgets them.
func TestFinishChunksPartial(t *testing.T) {
	c := New(Options{})
	emit := func([]byte, int) error { return nil }
	scrape := func(i int, partial bool, names ...string) {
		c.Begin(at(i))
		for _, n := range names {
			c.Add(smp(n, counter, none, float64(10+i), "k", "v"), nil)
		}
		if _, _, err := c.FinishChunks(nil, nil, nil, ChunkOptions{Partial: partial}, emit); err != nil {
			t.Fatal(err)
		}
	}
	startOf := func(i int, name string) uint64 {
		c.Begin(at(i))
		c.Add(smp(name, counter, none, float64(10+i), "k", "v"), nil)
		ms, _ := c.Finish()
		return ms[0].GetSum().GetDataPoints()[0].StartTimeUnixNano
	}
	scrape(0, false, "a_total", "b_total")
	scrape(1, true, "a_total") // cut off before b_total
	if got := startOf(2, "b_total"); got != ns(0) {
		t.Fatalf("b_total after a partial scrape: start %d, want the first observation %d", got, ns(0))
	}
	// Scrape 2 was complete and had only b_total: a_total is forgotten.
	if got := startOf(3, "a_total"); got != ns(3) {
		t.Fatalf("a_total after a complete scrape without it: start %d, want %d", got, ns(3))
	}
}

// TestFinishChunksInterleaves checks the row layout on a scrape of many
// series: the first chunk holds series of every family (not one family after
// the other), the chunks joined are FinishEncoded's data, and gzip finds the
// repetitions (each container's labels once per family) that a family-by-family
// order puts beyond its 32 KiB window.
func TestFinishChunksInterleaves(t *testing.T) {
	samples := cadvisorLike(400)
	ref, chunked := New(Options{}), New(Options{})
	for _, c := range []*Converter{ref, chunked} {
		for i := range 2 {
			c.Begin(at(i))
			for _, s := range samples {
				c.Add(s, nil)
			}
			if i == 0 {
				c.FinishEncoded(nil, nil, nil)
			}
		}
	}
	encoded, stats := ref.FinishEncoded(nil, nil, nil)
	want := &metricspb.MetricsData{}
	if err := proto.Unmarshal(encoded, want); err != nil {
		t.Fatal(err)
	}
	merged := &metricspb.MetricsData{}
	var chunks [][]byte
	_, cstats, err := chunked.FinishChunks(nil, nil, nil, ChunkOptions{MaxDataPoints: 2000}, func(chunk []byte, n int) error {
		md := &metricspb.MetricsData{}
		if err := proto.Unmarshal(chunk, md); err != nil {
			t.Fatal(err)
		}
		if len(chunks) == 0 {
			names := map[string]bool{}
			for _, rm := range md.ResourceMetrics {
				for _, m := range rm.ScopeMetrics[0].Metrics {
					names[m.Name] = true
				}
			}
			if len(names) != len(want.ResourceMetrics[0].ScopeMetrics[0].Metrics) {
				t.Errorf("first chunk (%d points) holds %d families of %d", n, len(names), len(want.ResourceMetrics[0].ScopeMetrics[0].Metrics))
			}
		}
		chunks = append(chunks, bytes.Clone(chunk))
		merged.ResourceMetrics = append(merged.ResourceMetrics, md.ResourceMetrics...)
		return nil
	})
	if err != nil || cstats != stats {
		t.Fatalf("FinishChunks = %v, stats %+v, want %+v", err, cstats, stats)
	}
	if got := joinChunks(merged); !proto.Equal(got, want) {
		t.Fatal("chunks joined differ from FinishEncoded")
	}
	// The same bytes in family order, cut into as many pieces.
	gz := func(parts ...[]byte) int {
		var b bytes.Buffer
		for _, p := range parts {
			w, _ := flate.NewWriter(&b, flate.BestSpeed)
			_, _ = w.Write(p)
			_ = w.Close()
		}
		return b.Len()
	}
	var familyOrder [][]byte
	step := len(encoded)/len(chunks) + 1
	for i := 0; i < len(encoded); i += step {
		familyOrder = append(familyOrder, encoded[i:min(i+step, len(encoded))])
	}
	rows, plain := gz(chunks...), gz(familyOrder...)
	t.Logf("%d chunks; gzip level 1: rows %d bytes, family order %d bytes", len(chunks), rows, plain)
	if rows*2 > plain {
		t.Errorf("gzip of the rows is %d bytes, of the family order %d: want less than half", rows, plain)
	}
}
