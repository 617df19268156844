package promotlp

import (
	"bytes"
	"testing"

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
	buf      []byte
	resource []byte
	scope    []byte
	res      *resourcepb.Resource
	sc       *commonpb.InstrumentationScope
}

// newEncodedTwin returns a twin; withMessages false leaves out the resource
// and scope fields.
func newEncodedTwin(t testing.TB, o Options, withMessages bool) *encodedTwin {
	tw := &encodedTwin{c: New(o)}
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
